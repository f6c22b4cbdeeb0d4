"""A team's tracking server: `mlflow server` on a project-local PostgreSQL cluster.

    seqtune tracking-server     # = make tracking; then, in another shell:
    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 make run

The sqlite file that every stage uses by default is one person's store. This starts what a
team shares instead: a PostgreSQL cluster of the project's own (`tracking_server.dir`/pgdata,
created on first start with Debian's `postgresql` binaries; no system service, no root
needed, reachable only through a Unix socket inside that folder, as its own pg_hba.conf and
postgresql.conf say), and `mlflow server` on `tracking_server.host:port` with it as the
backend store and `<dir>/artifacts` as the artifact store, served through the server
(`--artifacts-destination`), so clients need only the URL.
Ctrl-C / SIGTERM stops the server, then the database (fast shutdown: committed data is kept).

PostgreSQL refuses to run as root; started as root (containers, CI), the cluster is owned
by and run as the `postgres` system user that Debian's package creates.

`tracking_server.auth: basic` puts HTTP basic authentication in front of it (MLflow's own
`mlflow server --app-name basic-auth`, which needs MLflow's `auth` extra, Flask-WTF). Without
it, whoever reaches host:port may register versions and move `champion`. With it:

    SEQTUNE_TRACKING_ADMIN_PASSWORD_FILE=/run/secrets/mlflow-admin seqtune tracking-server
    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... MLFLOW_TRACKING_URI=... make run

- MLflow keeps its users in a database of its own: here a second database (`<database>_auth`)
  in the same cluster, over the same socket, named in `<dir>/basic_auth.ini`, which
  `MLFLOW_AUTH_CONFIG_PATH` points the server to (rewritten on every start; it holds no secret,
  written for its owner only all the same).
- The admin (`admin`) is created on the first start from the password in
  `SEQTUNE_TRACKING_ADMIN_PASSWORD`, or in the file `SEQTUNE_TRACKING_ADMIN_PASSWORD_FILE` names
  (one of the two, as the service's token: seqtune.serving.security), handed to the server as
  `MLFLOW_AUTH_ADMIN_PASSWORD` in its environment only (never a command line, a file of ours or
  a log). MLflow reads it only while the admin does not exist yet, so every later start checks
  the admin can log in with it and refuses to serve otherwise: the variable always holds the
  admin's current password.
- Every other user gets READ on what they did not create (`default_permission`); the admin
  creates users through MLflow's REST API (/api/2.0/mlflow/users/create) and grants EDIT or
  MANAGE on registered models (docs/security.md, "Who can write the registry").
- /health answers without credentials (MLflow leaves it open), so `wait_healthy` is unchanged.
- Basic credentials cross the network in clear: beyond loopback, a TLS proxy must front it.
"""

from __future__ import annotations

import configparser
import io
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from urllib.parse import quote

from seqtune.config import DEFAULT_PARAMS, TrackingServerConfig, load_params
from seqtune.secret_source import read_secret
from seqtune.tracking import repo_root

log = logging.getLogger(__name__)

DB_USER = "seqtune"
INSTALL_HINT = "install PostgreSQL's server binaries, e.g. `sudo apt-get install -y postgresql`"

# `auth: basic` (see the module docstring).
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD_ENV = "SEQTUNE_TRACKING_ADMIN_PASSWORD"
ADMIN_PASSWORD_FILE_ENV = "SEQTUNE_TRACKING_ADMIN_PASSWORD_FILE"
AUTH_INI = "basic_auth.ini"
AUTH_DATABASE_SUFFIX = "_auth"
MIN_PASSWORD_CHARS = 12  # MLflow's own rule (mlflow.utils.validation._validate_password)
# The admin password that older MLflow versions shipped in basic_auth.ini (GHSA-gq3w-7jj3-x7gr):
# MLflow refuses it; refused here first, with a message that names our variables.
LEGACY_DEFAULT_PASSWORD = "password1234"


def postgres_bindir() -> Path:
    """The folder holding initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    debian = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if debian:
        return Path(debian[-1]).parent
    raise RuntimeError(f"PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql): {INSTALL_HINT}")


# pg_ctl starts postgres through `/bin/sh -c`, with the data dir inside double quotes, where
# these characters still mean something to the shell: a data dir holding one is refused.
SHELL_UNSAFE = frozenset('"$`\\\n')

# The whole access policy, rewritten on every start (so a cluster created before it, with
# `initdb --auth=trust`, gets it too): the Unix socket in the data dir, which only its owner
# (and root) can open, is trusted; every TCP connection is rejected, should one ever listen.
PG_HBA = """\
# Written by seqtune on every start (seqtune.tracking_server): edits here are overwritten.
local   all   all          trust
host    all   all   all    reject
"""

SETTINGS_FILE = "seqtune.conf"
INCLUDE_LINE = f"include '{SETTINGS_FILE}'"


def conf_string(value: str) -> str:
    """`value` as a postgresql.conf string literal (single quotes; ' doubled, \\ escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL cluster in `datadir`, listening only on a Unix socket in that folder."""

    datadir: Path
    database: str = "seqtune"

    def __post_init__(self) -> None:
        bad = sorted(set(str(self.datadir)) & SHELL_UNSAFE)
        if bad:
            raise ValueError(f"PostgreSQL's data dir {str(self.datadir)!r} contains {bad}, which pg_ctl's shell "
                             "line cannot carry: set tracking_server.dir to a path without them")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL MLflow takes (psycopg2, Unix socket; the path percent-encoded)."""
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        """`url` for another database of this cluster (the auth app's user store)."""
        return f"postgresql+psycopg2://{DB_USER}@/{database}?host={quote(str(self.datadir), safe='/')}"

    def _as_owner(self) -> list[str]:
        # initdb and postgres refuse uid 0: run them as Debian's `postgres` user.
        if os.geteuid() != 0:
            return []
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root needs `runuser` (util-linux) to start PostgreSQL as `postgres`")
        return ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 180) -> None:
        """Run one PostgreSQL tool (no shell) as the cluster's owner; RuntimeError on failure
        or when it outlasts `timeout` (pg_ctl waits 60 s itself; initdb is seconds)."""
        try:
            res = subprocess.run([*self._as_owner(), *args], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{' '.join(args[:2])} did not finish within {timeout:g} s") from e
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed (rc {res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")

    def init(self) -> None:
        """Create the cluster on first use (a folder holding PG_VERSION is reused as is)."""
        if (self.datadir / "PG_VERSION").exists():
            return
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise RuntimeError(f"{self.datadir} exists but is not a PostgreSQL cluster: move it away or set tracking_server.dir")
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir, "postgres", "postgres")
        bindir = postgres_bindir()
        # Socket trusted, TCP rejected from the first line initdb writes (start() rewrites the same).
        self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-U", DB_USER, "--auth-local=trust",
                  "--auth-host=reject", "-E", "UTF8", "--locale=C", "--no-instructions")
        log.info("created a PostgreSQL cluster in %s", self.datadir)

    def settings(self) -> str:
        """seqtune.conf: no TCP listener, the socket in the data dir, for its owner only."""
        # unix_socket_directories is a comma-separated list: an entry is double-quoted so that a
        # path with a space or a comma stays one directory.
        socket_dir = conf_string('"' + str(self.datadir) + '"')
        return ("# Written by seqtune on every start (seqtune.tracking_server): edits here are overwritten.\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = {socket_dir}\n"
                "unix_socket_permissions = 0700\n")

    def _write(self, name: str, text: str) -> None:
        path = self.datadir / name
        path.write_text(text)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def configure(self) -> None:
        """Write the access policy and the settings into the cluster's own files, so that any
        start of it (ours, or a bare `pg_ctl start`) gets them, not only a command line of ours."""
        self._write("pg_hba.conf", PG_HBA)
        self._write(SETTINGS_FILE, self.settings())
        conf = (self.datadir / "postgresql.conf").read_text()
        if INCLUDE_LINE not in conf.splitlines():
            # Last in the file: a later setting wins, so these override any earlier one.
            self._write("postgresql.conf", conf.rstrip("\n") + f"\n\n# seqtune's settings\n{INCLUDE_LINE}\n")

    def start(self) -> None:
        self.configure()
        bindir = postgres_bindir()
        self._run(str(bindir / "pg_ctl"), "-D", str(self.datadir),
                  "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "start")
        self.create_database(self.database)

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(postgres_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> None:
        """Create database `name` in the running cluster unless it exists (`name` is a
        validated identifier: tracking_server.database's pattern, plus a suffix of ours)."""
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", user=DB_USER, host=str(self.datadir))
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()


class AuthConfigError(ValueError):
    """`auth: basic` without a usable admin password; the message says the fix."""


def admin_password(environ: Mapping[str, str] = os.environ) -> str:
    """The admin's password for `auth: basic`, from ADMIN_PASSWORD_ENV or the file that
    ADMIN_PASSWORD_FILE_ENV names (both set, neither set, an unreadable or empty file, or a
    password MLflow would refuse: AuthConfigError). Surrounding whitespace is stripped (a file
    written by `echo` ends in a newline). The message never holds the password."""
    found = read_secret(environ, ADMIN_PASSWORD_ENV, ADMIN_PASSWORD_FILE_ENV, what="password", error=AuthConfigError)
    if found is None:
        raise AuthConfigError(
            f"tracking_server.auth is basic but no admin password is given: set {ADMIN_PASSWORD_ENV}, or "
            f"{ADMIN_PASSWORD_FILE_ENV} to a file holding it (at least {MIN_PASSWORD_CHARS} characters), "
            "or set tracking_server.auth: none")
    password, source = found
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthConfigError(f"{source}: the admin password must have at least {MIN_PASSWORD_CHARS} characters")
    if password == LEGACY_DEFAULT_PASSWORD:
        raise AuthConfigError(f"{source}: that is the default password older MLflow versions shipped: choose another")
    if not password.isprintable():
        raise AuthConfigError(f"{source}: the admin password may not hold control characters")
    return password


def auth_ini(users_db_url: str) -> str:
    """basic_auth.ini for MLflow's auth app: users in `users_db_url`, everyone READ on what
    they did not create, the admin's name. No password: that goes through the environment."""
    cp = configparser.ConfigParser()
    # MLflow reads the file with ConfigParser's interpolation, where % starts a reference: the
    # URL's percent-encoded socket path (a space is %20) is written with each % doubled.
    cp["mlflow"] = {
        "default_permission": "READ",
        "database_uri": users_db_url.replace("%", "%%"),
        "admin_username": ADMIN_USERNAME,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    buf = io.StringIO()
    cp.write(buf)
    return "# Written by seqtune on every start (seqtune.tracking_server): edits here are overwritten.\n" + buf.getvalue()


def write_private(path: Path, text: str) -> None:
    """Write `path` readable and writable by its owner only (also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
    with os.fdopen(fd, "w") as f:
        f.write(text)


def auth_environment(ini: Path, password: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The mlflow server's environment for `auth: basic`: ours, plus where its ini is, the
    admin's name and password, and the secret key its CSRF protection needs (the operator's
    MLFLOW_FLASK_SERVER_SECRET_KEY if set, else a fresh one per start: one for all workers of
    this server, which is all MLflow asks; it signs only the signup form's token)."""
    return {
        **environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USERNAME,  # an inherited one would beat the ini's
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_urlsafe(32),
    }


def check_admin_login(url: str, password: str) -> None:
    """RuntimeError unless the admin can log in with `password`: MLflow uses the password only
    to create the admin on the first start, so after a change it would silently keep the old."""
    import requests

    res = requests.get(f"{url}/api/2.0/mlflow/users/get", params={"username": ADMIN_USERNAME},
                       auth=(ADMIN_USERNAME, password), timeout=30)
    if res.status_code == 401:
        raise RuntimeError(
            f"the tracking server's admin ({ADMIN_USERNAME!r}) does not log in with the password in "
            f"{ADMIN_PASSWORD_ENV}/{ADMIN_PASSWORD_FILE_ENV}: it sets the password only when the admin is "
            "created (the first start); give the current one, or change it with MLflow's "
            "/api/2.0/mlflow/users/update-password")
    if not res.ok:
        raise RuntimeError(f"checking the tracking server's admin login: HTTP {res.status_code}")


def mlflow_server_command(cfg: TrackingServerConfig, db_url: str, artifacts: Path) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", db_url,
        "--artifacts-destination", artifacts.as_uri(),
        "--host", cfg.host, "--port", str(cfg.port), "--workers", str(cfg.workers),
        # MLflow's basic-auth app: credentials on every route but /health and static files.
        *(["--app-name", "basic-auth"] if cfg.auth == "basic" else []),
    ]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Until `url`/health answers OK; RuntimeError if the server exits or times out first."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode} before it was ready")
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server at {url} not ready after {timeout_s:g} s")


@contextmanager
def running(cfg: TrackingServerConfig, root: Path | None = None, *, log_file: Path | None = None) -> Iterator[str]:
    """Start the database and the server; yield the tracking URL; stop both on exit.
    With `auth: basic`, a missing or unusable admin password fails before anything starts."""
    password = admin_password() if cfg.auth == "basic" else None
    base = Path(cfg.dir) if Path(cfg.dir).is_absolute() else repo_root(root) / cfg.dir
    pg = Postgres(base / "pgdata", cfg.database)
    artifacts = base / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    pg.init()
    pg.start()
    url = f"http://{cfg.host}:{cfg.port}"
    out = proc = None
    try:
        env = None
        if password is not None:
            users_db = cfg.database + AUTH_DATABASE_SUFFIX
            pg.create_database(users_db)
            ini = base / AUTH_INI
            write_private(ini, auth_ini(pg.url_of(users_db)))
            env = auth_environment(ini, password)
        out = open(log_file, "ab") if log_file else None  # noqa: SIM115 — closed below
        proc = subprocess.Popen(mlflow_server_command(cfg, pg.url, artifacts), stdout=out, stderr=out,
                                env=env, start_new_session=True)
        wait_healthy(url, proc, cfg.start_timeout_s)
        if password is not None:
            check_admin_login(url, password)
        log.info("MLflow tracking server on %s (PostgreSQL in %s, artifacts in %s%s)", url, pg.datadir, artifacts,
                 f"; basic auth, admin user {ADMIN_USERNAME!r}" if password is not None else "; no authentication")
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if out:
            out.close()
        pg.stop()


def main(*, params: Path = DEFAULT_PARAMS) -> None:
    """`seqtune tracking-server`: serve until Ctrl-C or SIGTERM."""
    import typer

    cfg = load_params(params).tracking_server
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    with running(cfg) as url:
        login = (f"\n  log in:  export MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password> "
                 f"(admin: {ADMIN_USERNAME!r})" if cfg.auth == "basic" else "")
        typer.echo(f"MLflow tracking server: {url}\n  use it:  export MLFLOW_TRACKING_URI={url}{login}\n  stop:    Ctrl-C")
        try:
            while not stop["now"]:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    typer.echo("tracking server stopped (database and artifacts kept)")
