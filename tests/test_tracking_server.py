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
from tests.ci import in_ci
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


def _require_postgres() -> None:
    """Without PostgreSQL, skip saying what to install — except in CI (`CI` set), where
    .ci/run installs it and a missing server must fail."""
    missing = _postgres_missing()
    if missing and not in_ci():
        pytest.skip(missing)


def _server_folder(prefix: str) -> Path:
    # Short and world-traversable: the socket path must fit 107 bytes, and as root the
    # cluster runs as `postgres`, which must reach its folder.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


@pytest.fixture(scope="module")
def server():
    """(tracking URL, server folder) of a fresh server; stopped (and its folder removed) after."""
    from seqtune import tracking_server

    _require_postgres()
    base = _server_folder("seqtune ts-")  # a space: the paths, and the URL MLflow is given, carry it
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


@pytest.fixture
def cluster_folder():
    """An empty folder for one PostgreSQL cluster, with a space in its name; removed after."""
    _require_postgres()
    base = _server_folder("seqtune ts-")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _access(pg) -> tuple[list[tuple], dict[str, tuple]]:
    """(pg_hba rules as (type, auth_method), {setting: (value, source, file name)}) of the
    running cluster `pg`, asked through the SQLAlchemy URL MLflow is given."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg.url)
    try:
        with engine.connect() as conn:
            rules = [tuple(r) for r in conn.execute(text("SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number"))]
            rows = conn.execute(text("SELECT name, setting, source, sourcefile FROM pg_settings WHERE name IN "
                                     "('listen_addresses', 'unix_socket_directories', 'unix_socket_permissions')"))
            settings = {name: (value, source, Path(file or "").name) for name, value, source, file in rows}
    finally:
        engine.dispose()
    return rules, settings


def _hba_lines(pg) -> list[list[str]]:
    text = (pg.datadir / "pg_hba.conf").read_text()
    return [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


SOCKET_ONLY = [("local", "trust"), ("host", "reject")]


def _access_while_running(pg):
    """`_access` of the started cluster, stopped again whatever happens."""
    pg.start()
    try:
        return _access(pg)
    finally:
        pg.stop()


def test_the_cluster_trusts_its_socket_only_from_its_own_files_in_a_folder_with_a_space(cluster_folder):
    from seqtune.tracking_server import Postgres

    pg = Postgres(cluster_folder / "pg data")
    pg.init()
    # initdb's own file already refuses TCP: no host line that lets anyone in.
    host_lines = [line for line in _hba_lines(pg) if line[0].startswith("host")]
    assert host_lines and all(line[-1] == "reject" for line in host_lines), host_lines
    rules, settings = _access_while_running(pg)
    assert rules == SOCKET_ONLY
    # From the cluster's configuration files, not a command line: a bare `pg_ctl start` gets them too.
    assert settings["listen_addresses"] == ("", "configuration file", "seqtune.conf"), settings
    # One directory, quoted as a list entry (the connection above went through its socket).
    assert settings["unix_socket_directories"] == (f'"{pg.datadir}"', "configuration file", "seqtune.conf"), settings
    assert settings["unix_socket_permissions"][0] == "0700", settings


def test_a_cluster_that_trusted_tcp_gets_the_policy_when_started(cluster_folder):
    from seqtune.tracking_server import Postgres

    pg = Postgres(cluster_folder / "pgdata")
    pg.init()
    # As `initdb --auth=trust` wrote it before: TCP from localhost trusted too.
    (pg.datadir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n"
                                            "host all all ::1/128 trust\n")
    rules, settings = _access_while_running(pg)
    assert rules == SOCKET_ONLY
    assert settings["listen_addresses"][0] == ""
    pg.configure()  # as the next start does: the include is not added again
    assert (pg.datadir / "postgresql.conf").read_text().count("include 'seqtune.conf'") == 1


@pytest.mark.parametrize("bad", ['/tmp/a"b', "/tmp/$HOME", "/tmp/a`b`", "/tmp/a\\b", "/tmp/a\nb"])
def test_a_data_dir_the_shell_line_cannot_carry_is_refused(bad):
    from seqtune.tracking_server import Postgres

    # pg_ctl starts postgres through /bin/sh with the data dir in double quotes.
    with pytest.raises(ValueError, match="pg_ctl's shell line"):
        Postgres(Path(bad))


def test_conf_string_quotes_as_postgresql_reads_it():
    from seqtune.tracking_server import conf_string

    assert conf_string("") == "''"
    assert conf_string('"/tmp/it\'s here"') == "'\"/tmp/it''s here\"'"
    assert conf_string("a\\b") == "'a\\\\b'"


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
