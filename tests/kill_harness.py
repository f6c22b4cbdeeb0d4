"""kill -9 a running `dvc repro` at chosen moments, rerun it, compare with an uninterrupted run.

    .venv/bin/python -m pytest -q -s tests/test_kill_resume.py     # prints the kill points

A kill point is a line of the pipeline's output (a regular expression) and how many of them to
wait for: the harness starts `dvc repro` in its own process group, reads its output as it
comes, and on the N-th matching line sends SIGKILL to the whole group (dvc and the stage it
runs, with no chance to clean up). Then it reruns `dvc repro` until it completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import REPO, shipped_params

BIN = Path(sys.executable).parent

# What names a run rather than holds a result: the MLflow run id (a file, and a key), and
# wall-clock times and speeds (keys of JSON files; blanked before hashing).
RUN_SPECIFIC = {"run_id"}
# Also blanked: how a result was reached rather than the result — labels taken from the cache a
# killed run left, the step a training resumed at, whether this register created the version
# and the sentence saying why.
VOLATILE_KEYS = re.compile(
    r"(^run_id$|runtime|seconds|_per_second|_s$|^at$|created|elapsed|time"
    r"|^from_cache$|^labelled$|^resumed_from_step$|^reason$)"
)


@dataclass(frozen=True)
class KillPoint:
    name: str
    pattern: str
    """A regular expression over the output lines of `dvc repro` (stdout and stderr)."""
    nth: int = 1
    delay_s: float = 0.0
    """Wait this long after the line before killing (to land inside the work it announces)."""
    before: str | None = None
    """A line that must not have come yet when the kill lands: a kill after it is mistimed
    (it would test another point), and fails the test with that said, not a later point."""


def env(repo: Path) -> dict[str, str]:
    """The test's environment, with the repository's own MLflow store (runs never mix)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}


def make_repo(root: Path, overrides: dict, empty_store: Path | None = None) -> Path:
    """A git + DVC repository holding the pipeline's code and `overrides` over params.yaml
    (and a copy of `empty_store`, a migrated MLflow sqlite file, to save the migrations)."""
    root.mkdir(parents=True)
    if empty_store:
        shutil.copy(empty_store, root / "mlflow.db")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / f, root / f)
    (root / "params.yaml").write_text(yaml.safe_dump(shipped_params(overrides), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, env=env(root), check=True, capture_output=True)
    return root


def repro(repo: Path, timeout: int = 900) -> str:
    res = subprocess.run(["dvc", "repro"], cwd=repo, env=env(repo), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"dvc repro failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res.stdout + res.stderr


def repro_killed_at(repo: Path, point: KillPoint, timeout: float = 900) -> tuple[bool, list[str]]:
    """Run `dvc repro` and SIGKILL its process group at `point`. (killed, output lines);
    killed is False when the pipeline ended before the point was reached."""
    proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env(repo), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    rx = re.compile(point.pattern)
    seen, lines = 0, []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if rx.search(line):
            seen += 1
            if seen == point.nth:
                time.sleep(point.delay_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                lines += [ln.rstrip("\n") for ln in proc.stdout]  # what was printed before the kill
                if point.before and any(re.search(point.before, ln) for ln in lines):
                    raise AssertionError(f"{point.name}: killed too late, after {point.before!r}:\n"
                                         + "\n".join(lines[-20:]))
                return True, lines
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise TimeoutError(f"{point.name}: no kill point within {timeout} s")
    proc.wait()
    return False, lines


def _strip_timing(obj):
    if isinstance(obj, dict):
        return {k: ("<t>" if VOLATILE_KEYS.search(str(k)) else _strip_timing(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def file_digest(path: Path) -> str:
    """sha256 of the content; JSON files with their wall-clock fields blanked."""
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            data = json.dumps(_strip_timing(json.loads(data)), sort_keys=True).encode()
        except json.JSONDecodeError:
            pass  # a half-written JSON file: its raw bytes will differ, as they should
    return hashlib.sha256(data).hexdigest()


def outputs(repo: Path) -> dict[str, str]:
    """{relative path: digest} of every pipeline output file (DVC outs, metrics, plots)."""
    roots = ["data/molecules", "data/datasets", "data/models", "data/predictions", "metrics", "data/registry.json"]
    out = {}
    for r in roots:
        p = repo / r
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.exists() else []
        for f in files:
            rel = f.relative_to(repo).as_posix()
            if f.name not in RUN_SPECIFIC:
                out[rel] = file_digest(f)
    return out
