"""The registry lock: exclusive, released on error, taken over from the dead, never from the living.

    .venv/bin/python -m pytest -q tests/test_registry_lock.py

A real MLflow store (the per-test sqlite file); real processes for "dead" and "alive" holders.
The concurrent behaviour itself is tests/test_registry_race.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from seqtune.pipeline.registry_lock import HOLDER_TAG, RegistryBusyError, lock_name, registry_lock

NAME = "seqtune-smiles2formula"


@pytest.fixture
def client():
    from mlflow import MlflowClient

    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def plant(client, pid: int, host: str | None = None) -> None:
    """A lock as a process `pid` would leave it."""
    holder = {"token": "t-planted", "host": host or socket.gethostname(), "pid": pid, "by": "register x", "since": "then"}
    client.create_registered_model(lock_name(NAME), tags={HOLDER_TAG: json.dumps(holder)})


def held(client) -> bool:
    return bool(client.search_registered_models(f"name='{lock_name(NAME)}'"))


def test_lock_is_exclusive_and_released_even_on_error(client):
    with registry_lock(client, NAME, by="a", wait_s=5, stale_s=600):
        assert held(client)
        with pytest.raises(RegistryBusyError, match=r"being changed by `a`"):
            # The same process asking again waits like anyone else (not re-entrant): a bug
            # that nests two locked sections fails loudly instead of corrupting the history.
            with registry_lock(client, NAME, by="b", wait_s=0.3, stale_s=600):
                pass
    assert not held(client)
    with pytest.raises(ZeroDivisionError):
        with registry_lock(client, NAME, by="a", wait_s=5, stale_s=600):
            1 / 0  # noqa: B018
    assert not held(client)


def test_a_dead_holders_lock_is_taken_over_at_once(client):
    dead = subprocess.Popen(["true"])
    dead.wait()
    plant(client, dead.pid)
    t0 = time.monotonic()
    with registry_lock(client, NAME, by="me", wait_s=30, stale_s=600):
        holder = json.loads(client.get_registered_model(lock_name(NAME)).tags[HOLDER_TAG])
        assert holder["pid"] == os.getpid() and holder["by"] == "me"
    assert time.monotonic() - t0 < 10
    assert not held(client)


def test_a_live_holders_lock_is_waited_for_then_named(client):
    alive = subprocess.Popen(["sleep", "60"])
    try:
        plant(client, alive.pid)
        t0 = time.monotonic()
        with pytest.raises(RegistryBusyError) as err:
            with registry_lock(client, NAME, by="me", wait_s=1.0, stale_s=600):
                pass
        assert time.monotonic() - t0 >= 1.0
        assert f"pid {alive.pid}" in str(err.value) and "register x" in str(err.value)
        assert held(client)  # never deleted a live holder's lock
    finally:
        alive.kill()


def test_a_lock_from_another_host_is_taken_over_only_when_stale(client):
    plant(client, 1, host="another-machine")
    with pytest.raises(RegistryBusyError):
        with registry_lock(client, NAME, by="me", wait_s=0.5, stale_s=600):
            pass
    time.sleep(1.1)
    with registry_lock(client, NAME, by="me", wait_s=5, stale_s=1.0):
        pass
    assert not held(client)


def _smiles2formula_model(params_file, tmp_path, monkeypatch, lively_model_dir, lock_wait_s: float):
    """(params, model folder, metrics) of a registrable smiles2formula model in tmp_path."""
    import shutil

    monkeypatch.chdir(tmp_path)
    params = params_file({"tasks": ["smiles2formula"], "register": {"lock_wait_s": lock_wait_s}})
    model = tmp_path / "model"
    shutil.copytree(lively_model_dir, model)
    (model / "seqtune.json").write_text(json.dumps({"task": "smiles2formula", "format": "plain", "base_model": "tiny",
                                                    "data_hash": "d", "test_hash": "t", "method": "full"}))
    metrics = {"primary_metric": "exact_match", "exact_match": 0.5, "test_hash": "t", "n": 2}
    return params, model, metrics


def test_register_refuses_while_someone_else_holds_the_lock(client, params_file, tmp_path, monkeypatch, lively_model_dir):
    """The lock is actually taken by the verbs (a lock nobody takes would pass the tests above)."""
    from seqtune.pipeline import register, registry

    params, model, metrics = _smiles2formula_model(params_file, tmp_path, monkeypatch, lively_model_dir, 0.5)
    alive = subprocess.Popen(["sleep", "60"])
    try:
        plant(client, alive.pid)
        with pytest.raises(RegistryBusyError):
            register.register_model("smiles2formula", model, metrics, params=params)
        with pytest.raises(RegistryBusyError):
            registry.rollback("smiles2formula", params=params)
        client.delete_registered_model(lock_name(NAME))
        res = register.register_model("smiles2formula", model, metrics, params=params)
        assert res.created and res.promoted and res.champion == res.version
        assert client.get_model_version(NAME, str(res.version)).tags["alias_decision"].startswith(f"v{res.version} is the first")
    finally:
        alive.kill()


def test_a_register_killed_before_its_decision_is_decided_by_the_rerun(client, params_file, tmp_path, monkeypatch,
                                                                       lively_model_dir):
    """Killed between creating the version and moving the alias, a re-run of the same folder
    must still promote it; a version that was decided (then rolled back from) must stay so."""
    import shutil

    from seqtune.pipeline import register, registry

    monkeypatch.chdir(tmp_path)
    params = params_file({"tasks": ["smiles2formula"]})

    def model(i: int, score: float):
        out = tmp_path / f"model{i}"
        shutil.copytree(lively_model_dir, out)
        (out / "seqtune.json").write_text(json.dumps({"task": "smiles2formula", "format": "plain", "base_model": "tiny",
                                                      "data_hash": "d", "test_hash": "t", "method": "full"}))
        (out / "training_summary.json").write_text(str(i))
        return out, {"primary_metric": "exact_match", "exact_match": score, "test_hash": "t", "n": 2}

    first = register.register_model("smiles2formula", *model(0, 0.3), params=params)
    better = model(1, 0.5)
    real_decide = register._decide
    monkeypatch.setattr(register, "_decide", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        register.register_model("smiles2formula", *better, params=params)
    monkeypatch.setattr(register, "_decide", real_decide)
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == first.version

    rerun = register.register_model("smiles2formula", *better, params=params)
    assert not rerun.created and rerun.promoted and rerun.champion == first.version + 1
    registry.rollback("smiles2formula", params=params)
    again = register.register_model("smiles2formula", *better, params=params)
    assert not again.promoted and again.champion == first.version, "a re-run undid a rollback"


def test_a_lock_released_while_the_store_reports_the_conflict_is_retried(client, monkeypatch):
    """MLflow's create answers a unique-name conflict by re-reading the row; when the holder
    released it in between, the create fails with RESOURCE_DOES_NOT_EXIST (seen in CI). That
    means the lock is free: the waiter must retry, not crash."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    real = client.create_registered_model
    calls = {"n": 0}

    def racy(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MlflowException("Registered Model with name=x.lock not found", error_code=RESOURCE_DOES_NOT_EXIST)
        return real(*a, **k)

    monkeypatch.setattr(client, "create_registered_model", racy)
    with registry_lock(client, NAME, by="me", wait_s=5, stale_s=600):
        assert held(client)
    assert calls["n"] == 2 and not held(client)


def test_an_undecided_version_found_under_the_lock_is_decided_there(client, params_file, tmp_path, monkeypatch,
                                                                     lively_model_dir):
    """Another register created a version of the same folder while this one uploaded, then died
    before deciding: found under the lock, the version is decided right there. (The lock is not
    reentrant: taking it a second time waited out register.lock_wait_s on itself, then failed.)"""
    from seqtune.pipeline import register

    params, model, metrics = _smiles2formula_model(params_file, tmp_path, monkeypatch, lively_model_dir, 2)
    real_upload = register._upload

    def upload_while_another_registers_and_dies(mlflow, name, model_dir, scores, run_id):
        info = real_upload(mlflow, name, model_dir, scores, run_id)
        mlflow.register_model(info.model_uri, name, tags=register._version_tags("smiles2formula", model_dir, scores))
        return info

    monkeypatch.setattr(register, "_upload", upload_while_another_registers_and_dies)
    res = register.register_model("smiles2formula", model, metrics, params=params)
    assert (res.version, res.created, res.promoted, res.champion) == (1, False, True, 1)
    assert "undecided until now" in res.reason and not held(client)
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
