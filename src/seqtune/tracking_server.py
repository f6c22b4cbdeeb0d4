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
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from urllib.parse import quote

from seqtune.config import DEFAULT_PARAMS, TrackingServerConfig, load_params
from seqtune.tracking import repo_root

log = logging.getLogger(__name__)

DB_USER = "seqtune"
INSTALL_HINT = "install PostgreSQL's server binaries, e.g. `sudo apt-get install -y postgresql`"


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
        return f"postgresql+psycopg2://{DB_USER}@/{self.database}?host={quote(str(self.datadir), safe='/')}"

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
        self._create_database()

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(postgres_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", user=DB_USER, host=str(self.datadir))
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()


def mlflow_server_command(cfg: TrackingServerConfig, db_url: str, artifacts: Path) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", db_url,
        "--artifacts-destination", artifacts.as_uri(),
        "--host", cfg.host, "--port", str(cfg.port), "--workers", str(cfg.workers),
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
    """Start the database and the server; yield the tracking URL; stop both on exit."""
    base = Path(cfg.dir) if Path(cfg.dir).is_absolute() else repo_root(root) / cfg.dir
    pg = Postgres(base / "pgdata", cfg.database)
    artifacts = base / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    pg.init()
    pg.start()
    url = f"http://{cfg.host}:{cfg.port}"
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 — closed below
    proc = subprocess.Popen(mlflow_server_command(cfg, pg.url, artifacts), stdout=out, stderr=out,
                            start_new_session=True)
    try:
        wait_healthy(url, proc, cfg.start_timeout_s)
        log.info("MLflow tracking server on %s (PostgreSQL in %s, artifacts in %s)", url, pg.datadir, artifacts)
        yield url
    finally:
        if proc.poll() is None:
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
        typer.echo(f"MLflow tracking server: {url}\n  use it:  export MLFLOW_TRACKING_URI={url}\n  stop:    Ctrl-C")
        try:
            while not stop["now"]:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    typer.echo("tracking server stopped (database and artifacts kept)")
