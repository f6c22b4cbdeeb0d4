"""A real seqtune service for the service tests: tiny champions registered in a temp MLflow
store, imported into a temp BentoML home with `seqtune bento import`, served by
`bentoml.serve` on a free loopback port.

    .venv/bin/python -m pytest -q tests/test_service.py tests/test_service_fuzz.py
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.logging_state import restored_logging

REPO = Path(__file__).resolve().parents[1]


def _all_tasks_params() -> Path:
    """The shipped params.yaml with every task: the service under test serves all three
    (params.yaml's default trains and serves smiles2iupac only). Handed to the service as
    SEQTUNE_PARAMS."""
    import tempfile

    import yaml

    from seqtune.tasks import TASK_NAMES
    from tests.conftest import shipped_params

    path = Path(tempfile.mkdtemp(prefix="seqtune-test-params-")) / "params.yaml"
    path.write_text(yaml.safe_dump(shipped_params({"tasks": list(TASK_NAMES)}), sort_keys=False))
    return path


PARAMS = _all_tasks_params()
SERVICE = "service.service:Seqtune"
READY_TIMEOUT = 180  # s: model loading on a busy 2-core machine


def tiny_champion(base: Path, dst: Path, task: str, *, seed: int = 1) -> Path:
    """A "fine-tuned" tiny model folder for `task`: the tiny test model, its final norm
    scrambled, plus seqtune.json. The untouched random tiny model (tied embeddings) only
    echoes the prompt's last character, a newline that strips to ""; scrambling the norm makes
    its greedy outputs non-empty and input-dependent, so comparing outputs means something."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(base, dst)
    model = AutoModelForCausalLM.from_pretrained(dst)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.model.norm.weight.copy_(torch.randn(model.model.norm.weight.shape, generator=gen) * 2)
    model.save_pretrained(dst)
    card = {"task": task, "format": "instruction", "base_model": "tiny", "data_hash": "x", "test_hash": "y", "method": "full"}
    (dst / "seqtune.json").write_text(json.dumps(card))
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seqtune_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the seqtune CLI in a subprocess with the current environment (fresh BentoML state)."""
    return subprocess.run(
        [sys.executable, "-m", "seqtune.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Stack:
    url: str
    root: Path
    folders: dict[str, Path]
    """task -> the champion's model folder (what the service must answer like)."""
    tracking_uri: str
    bentoml_home: Path


def real_size_champion(base: Path, dst: Path, task: str) -> Path:
    """A real-size champion folder for `task`: a converted base model (tests.real_models, e.g.
    SmolLM2-135M) with seqtune.json, in the plain format the specialists use. It was never
    fine-tuned, so it rarely emits EOS: every answer runs to serve.max_new_tokens, the most
    work an item can cost."""
    shutil.copytree(base, dst)
    card = {"task": task, "format": "plain", "base_model": base.name, "data_hash": "x", "test_hash": "y", "method": "full"}
    (dst / "seqtune.json").write_text(json.dumps(card))
    return dst


def import_champions(folders: dict[str, Path], metrics: dict[str, dict] | None = None) -> dict[str, Path]:
    """Register `folders` (task -> model folder, every task) as champions in the current
    MLflow store and import them into the current BentoML home (call with
    MLFLOW_TRACKING_URI, BENTOML_HOME and cwd set, e.g. inside `tiny_service_env`).
    `metrics`: task -> evaluation metrics to register it with (default: primary metric 0)."""
    from seqtune.pipeline.register import register_model
    from seqtune.tasks import get_task

    for task, folder in folders.items():
        scores = (metrics or {}).get(task) or {get_task(task).primary_metric: 0.0}
        res = register_model(task, folder, scores, params=PARAMS)
        assert res.promoted, res
    done = seqtune_cli("bento", "import", "--params", str(PARAMS))
    assert done.returncode == 0, done.stderr
    return folders


def import_tiny_champions(root: Path, tiny_model_dir: Path, empty_mlflow_db: Path | None = None,
                          metrics: dict[str, dict] | None = None) -> dict[str, Path]:
    """Register a tiny champion per task in `root`/mlflow.db and import them into
    `root`/bentoml (call with MLFLOW_TRACKING_URI, BENTOML_HOME and cwd pointing there).
    Returns task -> the champion's model folder. `metrics`: as in `import_champions`."""
    from seqtune.tasks import TASK_NAMES

    return import_champions({t: tiny_champion(tiny_model_dir, root / "models" / t, t) for t in TASK_NAMES}, metrics)


@contextmanager
def tiny_service_env(root: Path, empty_mlflow_db: Path | None = None) -> Iterator[tuple[str, Path]]:
    """(tracking URI, BentoML home) of `root`, set in the environment (and cwd = root)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    if empty_mlflow_db is not None:
        shutil.copy(empty_mlflow_db, root / "mlflow.db")
    home = root / "bentoml"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("BENTOML_HOME", str(home))
        # One torch thread in the server, as in the tests: same numerics, no oversubscription.
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("SEQTUNE_PARAMS", str(PARAMS))  # every task (the service reads this file)
        # No API token from the developer's shell: these servers are the token-less loopback
        # default (tests/test_service_security.py hands its server one explicitly).
        mp.delenv("SEQTUNE_API_TOKEN", raising=False)
        mp.delenv("SEQTUNE_API_TOKEN_FILE", raising=False)
        mp.chdir(root)  # MLflow's artifact folder follows the working directory
        yield uri, home


@contextmanager
def running_service(root: Path, tiny_model_dir: Path, empty_mlflow_db: Path | None = None,
                    metrics: dict[str, dict] | None = None) -> Iterator[Stack]:
    """Register tiny champions, import them, serve them; stop the server on exit.
    `empty_mlflow_db`: a migrated empty store to copy (saves the schema migrations);
    `metrics`: task -> the evaluation metrics to register its champion with."""
    import bentoml

    with tiny_service_env(root, empty_mlflow_db) as (uri, home):
        folders = import_tiny_champions(root, tiny_model_dir, metrics=metrics)
        port = free_port()
        with restored_logging():  # an in-process bentoml.serve reconfigures logging
            server = bentoml.serve(SERVICE, working_dir=str(REPO), host="127.0.0.1", port=port)
        url = f"http://127.0.0.1:{port}"
        try:
            # Waits on /readyz: every model loaded. Stopping before ready can hang, so the
            # stop below only ever runs after this wait returned or timed out.
            bentoml.SyncHTTPClient(url, server_ready_timeout=READY_TIMEOUT).close()
            yield Stack(url, root, folders, uri, home)
        finally:
            server.stop()


def start_serve(target: str, env: dict[str, str], *, port: int, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """`bentoml serve <target>` on 127.0.0.1:`port` in its own process group, output in `log`
    (`target`: a bento tag, or `service.service:Seqtune` with `cwd` = the repository)."""
    args = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    if cwd is not None:
        args += ["--working-dir", str(cwd)]
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_serve(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM the server's whole process group (SIGKILL after `timeout`); its exit code."""
    import signal

    if proc.poll() is not None:
        return proc.returncode
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=30)


@contextmanager
def bento_server(tag: str, env: dict[str, str], *, port: int, log: Path) -> Iterator[str]:
    """`bentoml serve <tag>` as a subprocess (its own BentoML home in `env`), output in `log`;
    its whole process group is killed on exit."""
    proc = start_serve(tag, env, port=port, log=log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_serve(proc)


def wait_ready(url: str, proc: subprocess.Popen) -> Counter:
    """Poll /readyz until 200; returns what it answered before (status codes, 'refused')."""
    seen: Counter = Counter()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited while starting"
        try:
            code = requests.get(f"{url}/readyz", timeout=5).status_code
        except requests.ConnectionError:
            code = "refused"
        except requests.Timeout:
            code = "no answer in 5 s"
        if code == 200:
            return seen
        seen[code] += 1
        time.sleep(0.05)
    raise TimeoutError("not ready")


@contextmanager
def serving(tmp_path, empty_mlflow_db, champions, serve: dict | None = None, env: dict[str, str] | None = None):
    """(url, process, log, champion folders, what /readyz said before ready) of a running
    server of the champions `champions(root)` registers (task -> folder); `serve`: params.yaml
    `serve` settings that differ from the tests' params file; `env`: variables for the server
    process only (e.g. its API token)."""
    from seqtune.tasks import TASK_NAMES
    from tests.conftest import shipped_params

    with tiny_service_env(tmp_path, empty_mlflow_db):
        folders = champions(tmp_path)
        port = free_port()
        log = tmp_path / "server.log"
        env = {**os.environ, **(env or {})}
        if serve:
            path = tmp_path / "serve-params.yaml"
            path.write_text(yaml.safe_dump(shipped_params({"tasks": list(TASK_NAMES), "serve": serve}), sort_keys=False))
            env["SEQTUNE_PARAMS"] = str(path)
        proc = start_serve(SERVICE, env, port=port, log=log, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        try:
            before_ready = wait_ready(url, proc)
            yield url, proc, log, folders, before_ready
        finally:
            stop_serve(proc)
