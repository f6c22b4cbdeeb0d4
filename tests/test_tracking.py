"""The MLflow tracking URI is absolute and survives DVC experiment temp copies."""

from __future__ import annotations

import os
from pathlib import Path

from seqtune.tracking import repo_root, tracking_uri


def test_repo_root_inside_dvc_exp_temp_copy(tmp_path):
    repo = tmp_path / "repo"
    tmp_copy = repo / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    tmp_copy.mkdir(parents=True)
    (tmp_copy / "dvc.yaml").write_text("stages: {}\n")
    # A temp copy has its own dvc.yaml; the store must still be the user's repo.
    assert repo_root(tmp_copy) == repo
    (tmp_copy / "sub").mkdir()
    assert repo_root(tmp_copy / "sub") == repo


def test_default_uri_is_absolute_sqlite_in_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "src").mkdir()
    assert tracking_uri(None, tmp_path / "src") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    # A relative sqlite URI from params.yaml is anchored at the repo root, not the cwd.
    assert tracking_uri("sqlite:///runs/m.db", tmp_path) == f"sqlite:///{tmp_path / 'runs' / 'm.db'}"
    assert tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_env_var_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert tracking_uri("sqlite:///x.db", tmp_path) == "http://127.0.0.1:5001"


def test_artifacts_live_beside_the_sqlite_store(tmp_path, monkeypatch):
    from seqtune.tracking import setup_mlflow

    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # the cwd must not decide where artifacts go
    mlflow = setup_mlflow(None, "exp-a")
    exp = mlflow.get_experiment_by_name("exp-a")
    store = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    assert exp.artifact_location == (store.parent / "mlartifacts").as_uri()
