"""Supply chain (docs/security.md, "Supply chain"): bench-only packages, the hashed lock.

    python -m pytest -q tests/test_supply_chain.py

- `trl` and `datasets` are the `bench` extra: nothing in src/seqtune or service/ imports them
  (statically, function-level imports and `importlib.import_module("...")` included), so the
  package and the bento install and run without them.
- requirements.lock pins every package the install needs, each `==` one version with at least
  one sha256, and the Makefile installs from it in pip's hash-checking mode (`--require-hashes`),
  then seqtune itself with `--no-deps`, so nothing unhashed is resolved on the way.

The rules are functions of text, so each is also checked on a small fake input that breaks it.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = REPO / "requirements.lock"
BENCH_ONLY_MODULES = {"trl": "trl", "datasets": "datasets"}
"""The bench extra's distributions -> the top-level module each installs."""


# ------------------------------------------------------------------ bench-only packages


def imported_modules(source: str) -> set[str]:
    """Top-level names of every module `source` imports: `import a.b`, `from a import b`
    anywhere (function bodies too), and `importlib.import_module("a...")` / `__import__("a")`
    with a literal name. Relative imports are the package's own: not counted."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.add(node.args[0].value.split(".")[0])
    return found


def bench_only_imports(files: list[Path]) -> list[str]:
    bad = []
    for f in files:
        for module in sorted(imported_modules(f.read_text()) & set(BENCH_ONLY_MODULES.values())):
            bad.append(f"{f.relative_to(REPO) if f.is_relative_to(REPO) else f}: imports {module} (bench-only)")
    return bad


def test_bench_only_packages_are_an_extra_nothing_shipped_imports():
    deps = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    bench = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["bench"]}
    assert bench == set(BENCH_ONLY_MODULES) and not bench & deps
    shipped = sorted((REPO / "src" / "seqtune").rglob("*.py")) + sorted((REPO / "service").rglob("*.py"))
    assert len(shipped) > 20
    assert bench_only_imports(shipped) == []
    # ...while bench/ does use them (else the extra would be dead weight).
    used = set().union(*(imported_modules(f.read_text()) for f in (REPO / "bench").glob("*.py")))
    assert set(BENCH_ONLY_MODULES.values()) <= used


@pytest.mark.parametrize("source", [
    "def f():\n    from datasets import Dataset\n",
    "import trl.trainer\n",
    "import importlib\nm = importlib.import_module('trl')\n",
    "x = __import__('datasets.arrow_dataset')\n",
])
def test_the_bench_import_rule_can_fail(tmp_path, source):
    f = tmp_path / "m.py"
    f.write_text(source)
    assert len(bench_only_imports([f])) == 1
    f.write_text("from . import datasets\nimport trlx\nfrom mypkg.datasets import x\n")
    assert bench_only_imports([f]) == []


def install_recipe(makefile: str) -> list[str]:
    """The `pip install` lines of the Makefile's `$(VENV)/.installed` recipe."""
    recipe = makefile.split("$(VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in recipe.splitlines() if "pip install" in line]


def unchecked_installs(lines: list[str]) -> list[str]:
    """Install steps that could fetch a file whose hash nobody checked: every one must be in
    hash-checking mode, except seqtune's own editable install, which must then fetch nothing
    (--no-deps, and --no-build-isolation: setuptools comes from the lock)."""
    return [line for line in lines if "--require-hashes" not in line
            and not ("--no-deps" in line and "--no-build-isolation" in line and "-e " in line)]


def test_the_install_is_hash_checked_and_has_the_bench_extra():
    lines = install_recipe((REPO / "Makefile").read_text())
    assert len(lines) >= 4 and unchecked_installs(lines) == [], lines
    assert any("-r requirements.lock" in line and "--require-hashes" in line for line in lines)
    torch = [i for i, line in enumerate(lines) if line.endswith(" torch")]
    assert torch and torch[0] < next(i for i, line in enumerate(lines) if line.endswith("-r requirements.lock"))
    # `make bench` runs the TRL side: the install that make run/test/CI share has the extra.
    assert any(re.search(r"-e '\.\[dev,bench\]'", line) for line in lines)
    assert "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("line", [
    "$(PY) -m pip install -q --upgrade pip",
    "$(PY) -m pip install -q torch==2.13.0",
    "$(PY) -m pip install -q -c requirements.lock -e '.[dev]'",
    "$(PY) -m pip install -q --no-deps -e '.[dev,bench]'",  # build isolation fetches setuptools unhashed
])
def test_the_install_rule_can_fail(line):
    assert unchecked_installs([line]) == [line]
    assert unchecked_installs(["$(PY) -m pip install -q --require-hashes -r requirements.lock"]) == []


# ------------------------------------------------------------------ the hashed lock


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 digests) of a pip requirements file written with hashes
    (`name==version \\` then `--hash=sha256:...` lines); an error for any other line."""
    entries: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        spec, *opts = line.split()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", spec)
        if not m:
            raise ValueError(f"not a `name==version` pin: {raw!r}")
        digests = []
        for opt in opts:
            h = re.fullmatch(r"--hash=sha256:([0-9a-f]{64})", opt)
            if not h:
                raise ValueError(f"{m.group(1)}: unexpected {opt!r}")
            digests.append(h.group(1))
        if not digests:
            raise ValueError(f"{m.group(1)}=={m.group(2)} has no --hash")
        name = canonicalize_name(m.group(1))
        if name in entries:
            raise ValueError(f"{name} pinned twice")
        entries[name] = (m.group(2), digests)
    return entries


def test_the_lock_pins_every_requirement_with_hashes():
    lock = parse_lock(LOCK.read_text())
    assert len(lock) > 150
    wanted = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["dev"],
              *PYPROJECT["project"]["optional-dependencies"]["bench"]]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in lock, f"{name} is not in requirements.lock"
        assert req.specifier.contains(lock[name][0], prereleases=True), f"{name}=={lock[name][0]} vs {req}"
    assert lock["torch"][0] == "2.13.0+cpu"  # the CPU build (pyproject's torch==2.13.0), the file on disk


@pytest.mark.parametrize(("text", "why"), [
    ("numpy==2.4.6\n", "has no --hash"),
    ("numpy>=2 --hash=sha256:" + "a" * 64 + "\n", "not a `name==version` pin"),
    ("numpy==2.4.6 --hash=md5:abc\n", "unexpected"),
    ("-e .\n", "not a `name==version` pin"),
    ("numpy==2.4.6 \\\n    --hash=sha256:" + "a" * 64 + "\nNumPy==2.4.6 --hash=sha256:" + "b" * 64 + "\n", "pinned twice"),
])
def test_the_lock_rule_can_fail(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_lock(text)
    ok = "numpy==2.4.6 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64 + "\n    # via x\n"
    assert parse_lock(ok) == {"numpy": ("2.4.6", ["a" * 64, "b" * 64])}


# ------------------------------------------------------------------ the audit's verdict


def load_audit():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ci_audit", REPO / ".ci" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_audit_reads_pins_from_the_hashed_lock():
    audit = load_audit()
    pins = audit.pins(LOCK.read_text())
    assert len(pins) == len(parse_lock(LOCK.read_text()))
    assert "torch==2.13.0" in pins and all("--hash" not in p and "==" in p for p in pins)


def test_an_unreachable_advisory_database_is_not_a_clean_audit():
    """pip-audit prints "No known vulnerabilities found" and exits 0 when every package was
    skipped (no advisory database answered); that is reported as an audit not run."""
    audit = load_audit()
    skipped = {"dependencies": [{"name": "six", "skip_reason": "Dependency not found on PyPI and could not be audited"},
                                {"name": "rich", "skip_reason": "Dependency not found on PyPI and could not be audited"}]}
    code, msg = audit.verdict(skipped)
    assert code == 0 and msg.startswith("advisory database not reachable: audit not run (0 of 2 packages audited")
    code, msg = audit.verdict(None, "pip-audit: ConnectionError")
    assert code == 0 and msg == "advisory database not reachable: audit not run (pip-audit: ConnectionError)"


def test_a_known_vulnerability_fails_the_audit():
    audit = load_audit()
    report = {"dependencies": [
        {"name": "six", "version": "1.17.0", "vulns": []},
        {"name": "jinja2", "version": "3.1.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.1.6"]}]},
        {"name": "rich", "skip_reason": "not found"},
    ]}
    code, msg = audit.verdict(report)
    assert code == 1 and "audited 2 of 3 packages; not audited: rich" in msg and "jinja2==3.1.0: GHSA-xxxx (fixed in 3.1.6)" in msg
    report["dependencies"][1]["vulns"] = []
    assert audit.verdict(report) == (0, "audited 2 of 3 packages; not audited: rich: no known vulnerabilities")


# ------------------------------------------------------------------ the image's requirements


def load_image_requirements():
    import importlib.util

    import sys

    spec = importlib.util.spec_from_file_location("image_requirements", REPO / "scripts" / "image_requirements.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_the_image_installs_the_bentofile_closure_from_the_lock(tmp_path):
    """The image's venv comes from the lock's hashed entries (scripts/image.sh), not from
    BentoML resolving the bentofile's pins again: before, 23 of the image's 95 packages were
    other versions than the ones tested (python-dateutil 4.0.0 for the lock's 2.9.0.post0)."""
    text = load_image_requirements().image_requirements(LOCK, REPO / "service" / "bentofile.yaml")
    image = parse_lock(text)  # the lock's own rule: every entry `==` with its sha256s
    lock = parse_lock(LOCK.read_text())
    assert all(image[name] == lock[name] for name in image), "an entry differs from the lock's"
    import yaml

    for spec in yaml.safe_load((REPO / "service" / "bentofile.yaml").read_text())["python"]["packages"]:
        req = Requirement(spec)
        assert canonicalize_name(req.name) in image, spec
    # What the service imports at run time comes along (BentoML's own dependencies too) ...
    for needed in ("bentoml", "torch", "transformers", "rdkit", "starlette", "uvicorn", "prometheus-client", "jinja2"):
        assert needed in image, needed
    # ... and nothing that only the dev and bench extras or the pipeline need.
    for not_needed in ("pytest", "dvc", "mlflow", "peft", "trl", "datasets", "accelerate"):
        assert not_needed not in image, not_needed


@pytest.mark.parametrize(("bentofile", "why"), [
    ("python:\n  packages: ['numpy==2.4.6', 'notinthelock==1.0']\n", "notinthelock is not in"),
    ("python:\n  packages: ['numpy==9.9']\n", "pins numpy==9.9"),
    ("python:\n  packages: ['numpy>=2']\n", "is not pinned with =="),
])
def test_the_image_requirements_refuse_a_bentofile_that_drifted(tmp_path, bentofile, why):
    path = tmp_path / "bentofile.yaml"
    path.write_text(bentofile)
    with pytest.raises(SystemExit, match=re.escape(why)):
        load_image_requirements().image_requirements(LOCK, path)


def test_the_image_closure_follows_via_annotations(tmp_path):
    lock = tmp_path / "requirements.lock"
    h = " \\\n    --hash=sha256:" + "a" * 64 + "\n"
    lock.write_text(
        "bentoml==1.0" + h + "    # via seqtune (pyproject.toml)\n"
        "child==1.0" + h + "    # via\n    #   bentoml\n    #   other\n"
        "grandchild==2.0" + h + "    # via child\n"
        "devonly==3.0" + h + "    # via\n    #   pytest\n    #   seqtune (pyproject.toml)\n"
        "pytest==9.0" + h + "    # via seqtune (pyproject.toml)\n"
    )
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text("python:\n  packages: []\n")
    text = load_image_requirements().image_requirements(lock, bentofile)
    assert sorted(parse_lock(text)) == ["bentoml", "child", "grandchild"]


def test_one_package_entry_is_the_locks(tmp_path):
    """scripts/image.sh downloads the torch wheel with this entry in hash-checking mode."""
    module = load_image_requirements()
    entry = parse_lock(module.package_requirement(LOCK, "torch"))
    assert entry == {"torch": parse_lock(LOCK.read_text())["torch"]}
    with pytest.raises(SystemExit, match="no entry for notinthelock"):
        module.package_requirement(LOCK, "notinthelock")
