"""In CI a skip fails the run (tests/ci.py): real pytest runs of a tiny test file.

    .venv/bin/python -m pytest -q tests/test_ci.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.ci import in_ci
from tests.conftest import REPO

SKIPPING = """
import pytest

@pytest.fixture
def tool():
    pytest.skip("no frobnicator installed")

def test_passes():
    pass

@pytest.mark.skipif(True, reason="needs root")
def test_marked():
    pass

def test_fixture_skips(tool):
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""

SKIPPED_MODULE = """
import pytest

pytest.skip("the whole module needs podman", allow_module_level=True)

def test_never_collected():
    pass
"""

NO_SKIPS = """
import pytest

def test_passes():
    pass

@pytest.mark.xfail(reason="known bug")
def test_expected_failure():
    assert False
"""


def _pytest(tmp_path, files: dict[str, str], ci: str | None) -> subprocess.CompletedProcess:
    """pytest on `files` in tmp_path with only tests/ci.py as a plugin (not our conftest: no
    torch, no MLflow store), CI set to `ci` or unset."""
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "pytest", "-p", "tests.ci", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
           "-q", *files]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_skip_fails_a_ci_run_and_says_which_and_why(tmp_path):
    files = {"test_skipping.py": SKIPPING, "test_module.py": SKIPPED_MODULE}
    res = _pytest(tmp_path, files, ci="true")
    out = res.stdout + res.stderr
    assert res.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "skips fail a CI run" in out
    assert "SKIPPED test_skipping.py::test_marked: needs root" in out
    assert "SKIPPED test_skipping.py::test_fixture_skips: no frobnicator installed" in out
    assert "SKIPPED test_module.py: the whole module needs podman" in out
    assert "3 skipped: in CI every test must run" in out
    assert "test_expected_failure" not in out.split("skips fail a CI run")[1]  # an xfail is no skip
    # The same run outside CI passes: a skip there is allowed.
    outside = _pytest(tmp_path, files, ci=None)
    assert outside.returncode == pytest.ExitCode.OK, outside.stdout + outside.stderr
    assert "skips fail a CI run" not in outside.stdout


def test_a_ci_run_without_skips_passes_xfail_included(tmp_path):
    res = _pytest(tmp_path, {"test_clean.py": NO_SKIPS}, ci="true")
    assert res.returncode == pytest.ExitCode.OK, res.stdout + res.stderr
    assert "1 passed, 1 xfailed" in res.stdout


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("yes", True), ("TRUE", True),
                                                 ("", False), ("0", False), ("false", False), ("False", False),
                                                 ("no", False), ("off", False)])
def test_in_ci_reads_the_ci_variable(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected
    monkeypatch.delenv("CI")
    assert in_ci() is False


def test_ci_run_sets_ci_before_the_tests():
    # Without CI set, the tool-dependent tests (tests/test_image.py, tests/test_tracking_server.py)
    # would skip in CI, and tests/ci.py would let them.
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "export CI=true" in lines and "make test" in lines, lines
    assert lines.index("export CI=true") < lines.index("make test")
