"""What CI means to the tests: `in_ci()`, and a pytest plugin that fails a CI session with skips.

    CI=true .venv/bin/python -m pytest -q          # any skip: exit status 1, the skips listed

.ci/run installs every tool the tests start (PostgreSQL, Java, podman, ...) and sets CI, so a
test that skips there skipped for a reason CI exists to rule out, and a green run would hide
it. tests/conftest.py registers the plugin; `-p tests.ci` registers it in any other pytest run
(tests/test_ci.py). Light on purpose (no torch, no mlflow): that run starts in a second or so.
"""

from __future__ import annotations

import os

import pytest

PLUGIN_NAME = "seqtune-ci-skips"
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def in_ci() -> bool:
    """Whether this is a CI run: `CI` set to anything but empty, 0, false, no or off (GitHub
    Actions, GitLab and .ci/run set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in FALSE_WORDS


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    """The reason a skip gave (its longrepr is (path, line, "Skipped: reason"))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipsFail:
    """Records every skip, whether at collection (a module-level skip), setup (skipif, a
    fixture that skips) or in the test, and turns a session that would pass into a failure."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        # An xfail is reported as skipped too, marked `wasxfail`: an expected failure, not a skip.
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append((report.nodeid, skip_reason(report)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # pytest returns session.exitstatus as it is after this hook, so setting it here is what
        # makes the process exit non-zero. Only a pass (or nothing collected besides skipped
        # modules) is turned into a failure; any worse status already says enough.
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.skipped:
            return
        terminalreporter.section("skips fail a CI run (CI is set)", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}", red=True)
        terminalreporter.line(f"{len(self.skipped)} skipped: in CI every test must run (install what it needs, "
                              "or unset CI to allow skips)", red=True)


def register(config: pytest.Config) -> None:
    """Register the plugin once, in CI only."""
    if in_ci() and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(SkipsFail(), PLUGIN_NAME)


def pytest_configure(config: pytest.Config) -> None:
    """As a plugin of its own (`-p tests.ci`)."""
    register(config)
