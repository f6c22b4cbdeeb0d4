"""The team setup for real: `mlflow server` on a project-local PostgreSQL (seqtune.tracking_server),
the pipeline run against it over HTTP, and the registry raced through it by several processes.

    .venv/bin/python -m pytest -q tests/test_tracking_server.py

Needs PostgreSQL's server binaries (Debian's `postgresql`; `.ci/run` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from seqtune.config import TrackingServerConfig
from tests.kill_harness import make_repo
from tests.service_stack import free_port
from tests.test_pipeline import TINY_PARAMS, _sh
from tests.test_registry_race import NAME, run_contention


def _postgres_missing() -> str | None:
    from seqtune.tracking_server import postgres_bindir

    try:
        postgres_bindir()
    except RuntimeError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def server():
    """(tracking URL, server folder) of a fresh server; stopped (and its folder removed) after.
    Without PostgreSQL the tests skip, saying what to install — except in CI (`CI` set), where
    .ci/run installs it and a missing server must fail."""
    from seqtune import tracking_server

    missing = _postgres_missing()
    if missing and not os.environ.get("CI"):
        pytest.skip(missing)

    # Short and world-traversable: the socket path must fit 107 bytes, and as root the
    # cluster runs as `postgres`, which must reach its folder.
    base = Path(tempfile.mkdtemp(prefix="seqtune-ts-"))
    base.chmod(0o755)
    cfg = TrackingServerConfig(dir=str(base), port=free_port(), workers=2)
    try:
        with tracking_server.running(cfg, log_file=base / "mlflow-server.log") as url:
            yield url, base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _db_rows(base: Path, sql: str) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(dbname="seqtune", user="seqtune", host=str(base / "pgdata"))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_registry_contention_through_the_server(server, tmp_path, tiny_model_dir, params_file, monkeypatch):
    from mlflow import MlflowClient

    url, base = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    params = params_file({"tasks": ["smiles2formula"]})
    out = run_contention(MlflowClient(url), tiny_model_dir, tmp_path, params)
    # What the server says is what PostgreSQL holds.
    rows = _db_rows(base, f"SELECT version FROM model_versions WHERE name = '{NAME}' ORDER BY version")
    assert [r[0] for r in rows] == sorted(out["score"])
    print(f"tracking server (PostgreSQL): {out['ops']} concurrent registry operations, {out['refused']} refused, "
          f"{len(out['history'])} alias moves, consistent")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_pipeline_runs_against_the_server(server, tmp_path, monkeypatch):
    url, base = server
    # One task (RDKit only: no Java) is enough here.
    repo = make_repo(tmp_path / "repo", {**TINY_PARAMS, "tasks": ["smiles2formula"], "register": {"model_prefix": "team-"}})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    _sh(["dvc", "repro"], repo)

    from mlflow import MlflowClient

    client = MlflowClient(url)
    champion = client.get_model_version_by_alias("team-smiles2formula", "champion")
    assert int(champion.version) == 1
    # Runs and versions are rows in PostgreSQL; artifacts went through the server into its
    # artifact folder; the repository got no store of its own.
    assert ("team-smiles2formula", 1) in _db_rows(base, "SELECT name, version FROM model_versions")
    assert list((base / "artifacts").rglob("model.safetensors")), "the model's weights are not in the server's artifact store"
    assert not (repo / "mlflow.db").exists() and not (repo / "mlartifacts").exists() and not (repo / "mlruns").exists()
    registry = json.loads((repo / "data" / "registry.json").read_text())
    assert registry["smiles2formula"]["champion"] == 1

    # A second machine needs only the URL: import the champion into BentoML from the server.
    out = _sh(["seqtune", "bento", "import"], repo)
    assert "team-smiles2formula" in out, out
    assert os.listdir(Path(os.environ["BENTOML_HOME"]) / "models" / "team-smiles2formula")
