"""The team setup for real: `mlflow server` on a project-local PostgreSQL (seqtune.tracking_server),
the pipeline run against it over HTTP, and the registry raced through it by several processes;
with `tracking_server.auth: basic`, who may read and write it (docs/security.md, "Who can write
the registry").

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


# ------------------------------------------------------------------ tracking_server.auth: basic

ADMIN_PASSWORD = "admin-secret-" + "x" * 8
READER = ("reader", "reader-secret-123")


def _no_password_env(mp: pytest.MonkeyPatch) -> None:
    from seqtune import tracking_server as ts

    mp.delenv(ts.ADMIN_PASSWORD_ENV, raising=False)
    mp.delenv(ts.ADMIN_PASSWORD_FILE_ENV, raising=False)


def test_basic_auth_without_an_admin_password_is_a_clear_error_before_anything_starts(tmp_path, monkeypatch):
    from seqtune import tracking_server as ts
    from seqtune.config import parse_params

    _no_password_env(monkeypatch)
    cfg = parse_params({"tracking_server": {"auth": "basic", "dir": str(tmp_path / "ts")}}, "params.yaml").tracking_server
    with pytest.raises(ts.AuthConfigError) as e, ts.running(cfg):
        pass
    assert "tracking_server.auth is basic" in str(e.value)
    assert ts.ADMIN_PASSWORD_ENV in str(e.value) and ts.ADMIN_PASSWORD_FILE_ENV in str(e.value)
    assert not (tmp_path / "ts").exists(), "something started before the password was checked"


def test_the_admin_password_comes_from_the_variable_or_the_file(tmp_path):
    from seqtune import tracking_server as ts

    var, file = ts.ADMIN_PASSWORD_ENV, ts.ADMIN_PASSWORD_FILE_ENV
    secret = tmp_path / "pw"
    secret.write_text(ADMIN_PASSWORD + "\n")  # as `echo` writes it
    assert ts.admin_password({var: ADMIN_PASSWORD}) == ADMIN_PASSWORD
    assert ts.admin_password({file: str(secret)}) == ADMIN_PASSWORD
    (tmp_path / "empty").write_text("\n")
    for env, needle in [
        ({}, "no admin password"),
        ({var: ADMIN_PASSWORD, file: str(secret)}, "set one"),
        ({file: ""}, "name the password file"),
        ({file: str(tmp_path / "missing")}, "cannot read"),
        ({file: str(tmp_path / "empty")}, "at least 12 characters"),
        ({var: "short-one"}, "at least 12 characters"),
        ({var: "password1234"}, "default password"),
        ({var: "tab\tinside-the-password"}, "control characters"),
    ]:
        with pytest.raises(ts.AuthConfigError, match=needle) as e:
            ts.admin_password(env)
        assert ADMIN_PASSWORD not in str(e.value)


def test_the_auth_ini_is_what_mlflow_reads_with_a_percent_encoded_socket_path(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    from seqtune import tracking_server as ts

    url = ts.Postgres(tmp_path / "a dir" / "pgdata").url_of("seqtune_auth")
    assert "%20" in url
    ini = tmp_path / "basic_auth.ini"
    ts.write_private(ini, ts.auth_ini(url))
    assert ini.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    conf = read_auth_config()
    assert (conf.database_uri, conf.default_permission, conf.admin_username) == (url, "READ", "admin")
    assert conf.admin_password is None  # the password travels in the server's environment only


def test_the_auth_app_is_asked_for_only_with_auth_basic(tmp_path):
    from seqtune.tracking_server import auth_environment, mlflow_server_command

    none = mlflow_server_command(TrackingServerConfig(), "db", tmp_path)
    basic = mlflow_server_command(TrackingServerConfig(auth="basic"), "db", tmp_path)
    assert "--app-name" not in none
    assert basic[-2:] == ["--app-name", "basic-auth"] and basic[:-2] == none
    env = auth_environment(tmp_path / "basic_auth.ini", ADMIN_PASSWORD, {"MLFLOW_AUTH_ADMIN_USERNAME": "eve"})
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ADMIN_PASSWORD
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin"  # an inherited name would beat the ini's
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "basic_auth.ini")
    assert len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) >= 32


def _start_auth_server(base: Path):
    """`running` with auth basic (the admin password from the environment)."""
    from seqtune import tracking_server as ts

    cfg = TrackingServerConfig(dir=str(base), port=free_port(), workers=2, auth="basic")
    return ts.running(cfg, log_file=base / "mlflow-server.log")


@pytest.fixture(scope="module")
def auth_server():
    """(tracking URL, server folder) of a fresh server with auth basic; stopped and removed after."""
    from seqtune import tracking_server as ts

    _require_postgres()
    base = _server_folder("seqtune ts-auth-")
    secret = base / "admin-password"
    secret.write_text(ADMIN_PASSWORD + "\n")
    try:
        with pytest.MonkeyPatch.context() as mp:
            _no_password_env(mp)
            mp.setenv(ts.ADMIN_PASSWORD_FILE_ENV, str(secret))
            with _start_auth_server(base) as url:
                yield url, base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _api(url: str, method: str, path: str, auth=None, *, version: str = "2.0", **kw):
    import requests

    return requests.request(method, f"{url}/api/{version}/mlflow/{path}", auth=auth, timeout=60, **kw)


def _grant(url: str, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    """As the admin, give `username` `permission` on one resource (MLflow 3's permission API)."""
    res = _api(url, "POST", "users/permissions/grant", ADMIN, version="3.0",
               json={"username": username, "resource_type": resource_type, "resource_id": resource_id,
                     "permission": permission})
    assert res.ok, res.text


ADMIN = ("admin", ADMIN_PASSWORD)


def test_basic_auth_asks_credentials_on_every_route_but_health(auth_server):
    import requests

    url, base = auth_server
    for method, path, kw in [("GET", "registered-models/search", {}),
                             ("GET", "experiments/search", {"params": {"max_results": 5}}),
                             ("POST", "registered-models/create", {"json": {"name": "nobody"}})]:
        for auth in (None, ("admin", "wrong-password-1"), ("nobody", ADMIN_PASSWORD)):
            res = _api(url, method, path, auth, **kw)
            assert res.status_code == 401, (method, path, auth and auth[0], res.status_code, res.text[:200])
        assert _api(url, method, path, ADMIN, **kw).ok, (method, path)
    # Artifacts go through the server: the same gate.
    assert requests.get(f"{url}/api/2.0/mlflow-artifacts/artifacts", timeout=60).status_code == 401
    assert requests.get(f"{url}/api/2.0/mlflow-artifacts/artifacts", auth=ADMIN, timeout=60).ok
    # The probe `wait_healthy` polls stays open.
    assert requests.get(f"{url}/health", timeout=10).ok
    # Users live in their own database of the same cluster; the ini is the owner's alone.
    assert (base / "basic_auth.ini").stat().st_mode & 0o777 == 0o600
    assert ADMIN_PASSWORD not in (base / "basic_auth.ini").read_text()
    assert ADMIN_PASSWORD not in (base / "mlflow-server.log").read_text()


def _ensure_reader(url: str) -> None:
    res = _api(url, "POST", "users/create", ADMIN, json={"username": READER[0], "password": READER[1]})
    assert res.ok or "already exists" in res.text.lower() or res.status_code == 409, res.text


def test_a_read_user_cannot_change_a_model_it_did_not_create(auth_server):
    url, _ = auth_server
    _ensure_reader(url)
    assert _api(url, "POST", "registered-models/create", ADMIN, json={"name": "admins-model"}).ok
    # default_permission READ: it sees the model...
    assert _api(url, "GET", "registered-models/get", READER, params={"name": "admins-model"}).ok
    # ...but may not add a version, move an alias, tag or delete it.
    for method, path, body in [
        ("POST", "model-versions/create", {"name": "admins-model", "source": "mlflow-artifacts:/x"}),
        ("POST", "registered-models/alias", {"name": "admins-model", "alias": "champion", "version": "1"}),
        ("POST", "registered-models/set-tag", {"name": "admins-model", "key": "k", "value": "v"}),
        ("DELETE", "registered-models/delete", {"name": "admins-model"}),
    ]:
        res = _api(url, method, path, READER, json=body)
        assert res.status_code == 403, (path, res.status_code, res.text[:200])
    assert _api(url, "GET", "registered-models/get", ADMIN, params={"name": "admins-model"}).ok
    # What MLflow lets every user do, and the registry lock relies on: create a registered model
    # of its own (it gets MANAGE on it). docs/security.md says what that means for the lock.
    assert _api(url, "POST", "registered-models/create", READER, json={"name": "readers-model"}).ok


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_register_through_the_server_needs_credentials_that_may_write(auth_server, tiny_model_dir, tmp_path,
                                                                     params_file, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from seqtune.config import load_params
    from seqtune.pipeline import register, registry_store
    from seqtune.pipeline.registry_lock import lock_name
    from tests.test_registry_race import TASK, make_models

    url, _ = auth_server
    _ensure_reader(url)
    params = params_file({"tasks": [TASK]})
    (m0, s0), (m1, s1) = make_models(tiny_model_dir, tmp_path, [0.3, 0.5])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)

    def register_as(who, model, metrics):
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", who[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", who[1])
        return register.register_model(TASK, model, json.loads(metrics.read_text()), params=params)

    # No credentials: the store does not even open.
    with pytest.raises(RuntimeError, match="401"):
        register.register_model(TASK, m0, json.loads(s0.read_text()), params=params)

    res = register_as(ADMIN, m0, s0)  # the admin's credentials, from MLFLOW_TRACKING_USERNAME/PASSWORD
    assert (res.version, res.created, res.champion) == (1, True, 1)
    admin = MlflowClient(url)  # sends whatever credentials the environment holds at each request
    experiment = admin.get_experiment_by_name(load_params(params).mlflow.experiment)

    # A user who may log runs into the experiment, but has only READ on the model: it uploads,
    # takes the lock, and is refused the version; nothing changed, and its lock is gone.
    _grant(url, READER[0], "experiment", experiment.experiment_id, "EDIT")
    with pytest.raises(MlflowException, match="model-versions/create failed with error code 403"):
        register_as(READER, m1, s1)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    name = f"seqtune-{TASK}"
    assert [int(v.version) for v in registry_store.versions(admin, name)] == [1]
    assert int(admin.get_model_version_by_alias(name, "champion").version) == 1
    assert not admin.search_registered_models(f"name='{lock_name(name)}'"), "the refused register left its lock"

    # Granted EDIT on the model, the same user registers the better model and it becomes champion.
    _grant(url, READER[0], "registered_model", name, "EDIT")
    res = register_as(READER, m1, s1)
    assert (res.version, res.created, res.champion) == (2, True, 2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_admin_password_must_stay_the_admins_across_restarts(tmp_path, monkeypatch):
    from seqtune import tracking_server as ts

    _require_postgres()
    base = _server_folder("seqtune ts-auth-")
    try:
        _no_password_env(monkeypatch)
        monkeypatch.setenv(ts.ADMIN_PASSWORD_ENV, ADMIN_PASSWORD)
        with _start_auth_server(base) as url:
            assert _api(url, "GET", "registered-models/search", ADMIN).ok
        # MLflow reads the password only to create the admin: another one would be ignored.
        monkeypatch.setenv(ts.ADMIN_PASSWORD_ENV, "another-password-456")
        with pytest.raises(RuntimeError, match="does not log in with the password"), _start_auth_server(base):
            pass
        log = (base / "mlflow-server.log").read_text()
        assert "another-password-456" not in log and ADMIN_PASSWORD not in log
    finally:
        shutil.rmtree(base, ignore_errors=True)
