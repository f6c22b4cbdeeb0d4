"""The whole pipeline through real DVC, real MLflow and the tiny model:
`dvc repro` → registered champions; rerun is idempotent; `dvc push` to the shared remote and
`dvc pull` in a second clone leave nothing to reproduce; a param change registers a new
version; `dvc metrics show` works; `seqtune report` reads the runs.

    .venv/bin/python -m pytest -q tests/test_pipeline.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, shipped_params

BIN = Path(sys.executable).parent
TASKS = ["smiles2iupac", "smiles2formula", "iupac2smiles"]

TINY_PARAMS = {
    "tasks": TASKS,  # the end-to-end test covers all three (params.yaml's default trains one)
    "molecules": {"source": "rdkit-samples", "max_raw": 300, "max_heavy_atoms": 18, "workers": 1},
    "data": {"n_train": 32, "n_test": 12, "workers": 1, "chunk_size": 64},
    "base_model": {"name": "tiny"},
    "train": {"epochs": 1, "batch_size": 8, "max_length": 512, "logging_steps": 1, "save_steps": 1000, "val_size": 4},
    "evaluate": {"n_eval": 8, "batch_size": 8, "max_new_tokens": 16},
}


def _sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return res.stdout


def _write_params(repo: Path, overrides: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(shipped_params(overrides), sort_keys=False))


def _versions(name: str) -> list[int]:
    from mlflow import MlflowClient

    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_dvc_repro_end_to_end(tmp_path):
    from seqtune.tracking import setup_mlflow

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("dvc.yaml", ".dvcignore", ".gitignore"):  # what git must not hold
        shutil.copy(REPO / f, repo / f)
    shutil.copytree(REPO / "sweeps", repo / "sweeps")
    _write_params(repo, TINY_PARAMS)
    _sh(["git", "init", "-q"], repo)
    _sh(["dvc", "init", "-q"], repo)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")  # the shipped remote
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "commit", "-qm", "init"], repo)

    _sh(["dvc", "repro"], repo)
    setup_mlflow(None, "seqtune")
    for task in TASKS:
        metrics = json.loads((repo / "metrics" / f"{task}.json").read_text())
        assert metrics["primary_metric"] in metrics and "baseline_rule" in metrics
        assert (repo / "data" / "predictions" / f"{task}.jsonl").read_text().count("\n") == 8
        assert list((repo / "plots" / task / "png").glob("*.png"))
        assert _versions(f"seqtune-{task}") == [1]
    registry = json.loads((repo / "data" / "registry.json").read_text())
    assert {t: registry[t]["champion"] for t in TASKS} == dict.fromkeys(TASKS, 1)
    shown = json.loads(_sh(["dvc", "metrics", "show", "--json"], repo))
    assert shown, "dvc metrics show returned nothing"

    # Nothing changed: every cached stage is skipped, register still runs and creates nothing.
    out = _sh(["dvc", "repro"], repo)
    assert "Running stage 'train@" not in out
    assert "Running stage 'register'" in out
    for task in TASKS:
        assert _versions(f"seqtune-{task}") == [1]

    # Shared storage: push to the repo's default remote (a local folder), then a second clone
    # pulls every output and has nothing to reproduce.
    storage = tmp_path / "seqtune-dvc-storage"
    _sh(["dvc", "remote", "modify", "shared", "url", str(storage)], repo)
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "commit", "-qm", "repro"], repo)
    _sh(["dvc", "push"], repo)
    assert any(storage.rglob("*")), "dvc push wrote nothing to the remote"
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    # git holds only DVC's .gitignore entries for the outputs, never the outputs themselves.
    assert not list((clone / "data").rglob("*.safetensors")) and not list(clone.glob("metrics/*.json"))
    _sh(["dvc", "pull"], clone)
    for task in TASKS:
        assert (clone / "data" / "models" / task / "model.safetensors").read_bytes() == \
            (repo / "data" / "models" / task / "model.safetensors").read_bytes()
    # Only `register` (always_changed: MLflow is a side effect) is out of date.
    assert set(json.loads(_sh(["dvc", "status", "--json"], clone))) <= {"register"}
    out = _sh(["dvc", "repro", "--dry"], clone)
    assert "Running stage" in out and "Running stage 'register'" in out
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'register':"], out

    # A param change retrains and registers a new version of every task.
    _write_params(repo, {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "learning_rate": 1e-3}})
    out = _sh(["dvc", "repro"], repo)
    assert "Running stage 'train@smiles2formula'" in out
    for task in TASKS:
        assert _versions(f"seqtune-{task}") == [1, 2]

    # The report finds both runs of a two-point learning-rate sweep.
    sweeps = {"sweeps": {"lr": {"finding": "lr matters", "x": "train.learning_rate",
                                "points": [{"train.learning_rate": 5e-4}, {"train.learning_rate": 1e-3}]}}}
    (repo / "sweeps.yaml").write_text(yaml.safe_dump(sweeps))
    _sh(["seqtune", "report", "--params", "params.yaml", "--sweeps", "sweeps.yaml"], repo)
    md = (repo / "reports" / "findings.md").read_text()
    assert md.count("| 0.0005 |") == 3 and md.count("| 0.001 |") == 3, md
    assert (repo / "reports" / "lr_smiles2formula.png").exists()
