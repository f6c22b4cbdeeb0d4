"""The registry under contention: register / promote / rollback from several processes at once.

    .venv/bin/python -m pytest -q tests/test_registry_race.py

Real processes (tests/registry_worker.py) behind a barrier, released together by a go file
once every one has imported all it needs and said so, on one real store: the per-test sqlite
file, and (tests/test_tracking_server.py) an `mlflow server` on PostgreSQL.
What must hold whatever the interleaving: no two versions with the same content, one
champion, an alias history whose every move starts where the previous one ended, no move by
`register` or a plain `promote` to a worse model, and no lock left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.registry_worker import ready_file

TASK = "smiles2formula"
NAME = f"seqtune-{TASK}"


def make_models(src: Path, root: Path, scores: list[float]) -> list[tuple[Path, Path]]:
    """(model folder, metrics file) per score: the same weights, a different content hash each."""
    out = []
    for i, score in enumerate(scores):
        model = root / f"model{i}"
        shutil.copytree(src, model)
        card = {"task": TASK, "format": "plain", "base_model": "tiny", "data_hash": "d0", "test_hash": "t0", "method": "full"}
        (model / "seqtune.json").write_text(json.dumps(card))
        (model / "training_summary.json").write_text(json.dumps({"variant": i}))
        metrics = root / f"metrics{i}.json"
        metrics.write_text(json.dumps({"primary_metric": "exact_match", "exact_match": score, "test_hash": "t0",
                                       "data_hash": "d0", "decoding": "greedy", "n": 4, "max_new_tokens": 6}))
        out.append((model, metrics))
    return out


# How long every worker may take to import and say it is ready: ~10 s each alone, more when
# a dozen start at once on two busy cores. Shorter than the workers wait for the go signal.
READY_TIMEOUT_S = 300


def wait_ready(go: Path, procs: list[subprocess.Popen], timeout_s: float = READY_TIMEOUT_S) -> None:
    """The barrier: block until every worker has said it is ready. Fails at once, with its
    output, on a worker that exits before it is ready."""
    pending = {ready_file(go, p.pid) for p in procs}
    deadline = time.monotonic() + timeout_s
    while pending := {f for f in pending if not f.exists()}:
        for p in procs:
            if p.poll() is not None and ready_file(go, p.pid) in pending:
                out, err = p.communicate()
                raise AssertionError(f"{p.args[5:]} exited (rc {p.returncode}) before it was ready:\n{out}\n{err[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} of {len(procs)} workers not ready after {timeout_s:g} s")
        time.sleep(0.01)


def race(ops: list[list[str]], params: Path, work: Path, env: dict[str, str] | None = None) -> list[dict]:
    """Start one worker per op, release them together once all are ready, return their JSON results."""
    go = work / f"go-{time.monotonic_ns()}"
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.registry_worker", str(go), str(params), *op],
                         cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for op in ops
    ]
    try:
        wait_ready(go, procs)
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    go.touch()
    results = []
    for op, p in zip(ops, procs):
        out, err = p.communicate(timeout=600)
        assert p.returncode in (0, 3), f"{op} failed (rc {p.returncode}):\n{out}\n{err[-4000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    # The barrier held: no worker began its operation before the last one was ready (workers
    # that each start as soon as their own imports are done fail this).
    assert min(r["released"] for r in results) >= max(r["ready"] for r in results), results
    return results


def check_registry(client, *, forced_ok: bool = False) -> dict:
    """The invariants; returns {content_hash: version}, the champion and the history."""
    from seqtune.pipeline import registry_store as store
    from seqtune.pipeline.registry_lock import lock_name

    versions = store.versions(client, NAME)
    hashes = [v.tags["content_hash"] for v in versions]
    assert len(hashes) == len(set(hashes)), f"duplicate versions: {[(v.version, v.tags['content_hash'][:8]) for v in versions]}"
    score = {int(v.version): float(v.tags["primary_metric_value"]) for v in versions}
    history = store.alias_history(client, NAME)
    champion = store.get_alias(client, NAME, "champion")
    assert champion is not None
    assert history[-1]["version"] == int(champion.version), (history, champion.version)
    prev = None
    for move in history:
        assert move["previous"] == prev, f"history out of order: {history}"
        if prev is not None and move["by"] in ("register", "promote"):
            assert score[move["version"]] >= score[prev], f"{move} replaced a better model: {score}"
        prev = move["version"]
    assert store.holders(history)[-1] == int(champion.version)
    assert not client.search_registered_models(f"name='{lock_name(NAME)}'"), "a registry lock was left behind"
    return {"by_hash": dict(zip(hashes, score)), "champion": int(champion.version), "history": history, "score": score}


def run_contention(client, tiny_model_dir: Path, work: Path, params: Path, env: dict[str, str] | None = None) -> dict:
    """Two rounds: five concurrent registers (three of the same folder), then a mix of every verb."""
    models = make_models(tiny_model_dir, work, [0.3, 0.5, 0.4, 0.6])
    (m0, s0), (m1, s1), (m2, s2), (m3, s3) = models
    first = race([["register", str(m0), str(s0)]] * 3 + [
                  ["register", str(m1), str(s1)], ["register", str(m2), str(s2)]], params, work, env)
    assert not [r for r in first if "refused" in r], first  # nothing to refuse among registers
    state = check_registry(client)
    assert len(state["by_hash"]) == 3, first
    assert state["score"][state["champion"]] == 0.5, state
    assert first[0]["version"] == first[1]["version"] == first[2]["version"], first  # same folder, same version
    worst = min(state["score"], key=state["score"].get)

    second = race([["register", str(m3), str(s3)], ["promote", str(worst)], ["promote", str(worst)],
                   ["rollback"], ["rollback"], ["register", str(m1), str(s1)]], params, work, env)
    state = check_registry(client)
    assert len(state["by_hash"]) == 4, second
    refused = [r for r in second if "refused" in r]
    assert all("refusing to promote" in r["refused"] or "nothing to roll back" in r["refused"] for r in refused), refused
    n_ops = len(first) + len(second)
    return {**state, "ops": n_ops, "refused": len(refused)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_concurrent_registry_operations_on_sqlite(tmp_path, tiny_model_dir, params_file):
    from mlflow import MlflowClient

    params = params_file({"tasks": [TASK]})
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    out = run_contention(client, tiny_model_dir, tmp_path, params)
    print(f"sqlite: {out['ops']} concurrent registry operations, {out['refused']} refused, "
          f"{len(out['history'])} alias moves, consistent")
