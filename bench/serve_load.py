"""Load benchmark of the seqtune service: adaptive batching on vs off, same workload.

    .venv/bin/python bench/serve_load.py            # the champions in the MLflow store (tiny ones if there are none)
    .venv/bin/python bench/serve_load.py --tiny     # random tiny champions in a temp MLflow store + BentoML home
    .venv/bin/python bench/serve_load.py --base smollm2-135m   # the untuned base model as every champion

Starts the real service (`bentoml serve service.service:Seqtune`, loopback only) twice: with
params.yaml's `serve.max_batch_size` (batching on) and with `max_batch_size: 1` (batching
off). Each time it warms the server up, then sends the same fixed workload — one SMILES per
request to `--task` — at concurrency 1, 8, 32 and 64, and prints requests/s, p50 and p99
latency, failures, the model calls' batch sizes (from `/stats`), and the batched/unbatched
throughput ratio at concurrency 32. Every level is bounded by `--requests` and
`--max-seconds`. The two modes run `--repeats` alternating rounds (batched, unbatched,
batched, ...: a fresh server each), so a burst of other work slows a round of each rather than
one mode; the table gives medians, and the figures (median and min-max over rounds, the ratio
round by round) go to reports/bench/serve_load.json (`common.write_result`). Prints the load
averages: other work on the cores skews the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import httpx  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import BENCH, REPO, Server, load_average, seqtune_cli, spread, write_result  # noqa: E402

LEVELS = (1, 8, 32, 64)
# The fixed workload: small drug-like molecules, cycled.
WORKLOAD = [
    "CCO", "c1ccccc1", "CC(=O)O", "CCN", "CC(C)O", "c1ccncc1", "CC(=O)Nc1ccc(O)cc1", "CCOC(=O)C",
    "O=C(O)c1ccccc1O", "CN1CCCC1c1cccnc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "OCC(O)CO", "C1CCCCC1",
    "Clc1ccccc1", "CC#N", "NC(=O)N", "CCCCCCO", "c1ccc2ccccc2c1", "CC(=O)OC1=CC=CC=C1C(=O)O", "COc1ccccc1",
]


def _have_champions(params: Path, env: dict[str, str]) -> bool:
    code = (
        "import sys; from seqtune.pipeline import registry; from seqtune.config import load_params;"
        f"p = load_params({str(params)!r}); sys.exit(0 if all(registry.champion(t, params={str(params)!r}) for t in p.tasks) else 1)"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True).returncode == 0


def _temp_store(work: Path, params: Path, env: dict[str, str], base: str) -> dict[str, str]:
    """Register base model `base` (`tiny`, `smollm2-135m`, a path...) as every task's champion
    in a temp MLflow store; returns the environment pointing at it (and a temp BentoML home)."""
    env = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}", BENTOML_HOME=str(work / "bentoml"))
    code = f"""
import json, shutil, sys
from pathlib import Path
sys.path.insert(0, {str(BENCH)!r})
from common import resolve_base
from seqtune.config import load_params
from seqtune.pipeline.register import register_model
from seqtune.tasks import get_task
work = Path({str(work)!r}); name = {base!r}
folder = resolve_base(name, work / "base", card=False)
for task in load_params({str(params)!r}).tasks:
    d = work / "models" / task; shutil.copytree(folder, d)
    (d / "seqtune.json").write_text(json.dumps({{"task": task, "format": "instruction", "base_model": name,
        "data_hash": "bench", "test_hash": "bench", "method": "full"}}))
    register_model(task, d, {{get_task(task).primary_metric: 0.0}}, params=Path({str(params)!r}))
"""
    subprocess.run([sys.executable, "-c", code], env=env, cwd=work, check=True, capture_output=True)
    return env


async def _level(url: str, task: str, field: str, concurrency: int, n: int, max_seconds: float) -> dict:
    """`n` single-input requests, `concurrency` in flight; stops issuing after `max_seconds`."""
    latencies: list[float] = []
    failures = 0
    next_i = 0
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_i, failures
            while next_i < n and time.perf_counter() - start < max_seconds:
                smiles = WORKLOAD[next_i % len(WORKLOAD)]
                next_i += 1
                t = time.perf_counter()
                try:
                    r = await client.post(f"{url}/{task}", json={field: [smiles]})
                    ok = r.status_code == 200 and r.json()[0]["error"] is None
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                failures += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "concurrency": concurrency, "requests": len(lat), "failures": failures, "wall_s": wall,
        "rps": (len(lat) - failures) / wall if wall else 0.0,
        "p50_s": statistics.median(lat) if lat else float("nan"),
        "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
    }


def _batch_sizes(url: str, task: str) -> dict[str, int]:
    return httpx.post(f"{url}/stats", json={}, timeout=30).json()["tasks"][task]["batch_sizes"]


def run_mode(label: str, params: Path, env: dict[str, str], args, work: Path) -> list[dict]:
    server = Server(params, env, work / f"serve-{label}.log")
    try:
        server.wait_ready(args.ready_timeout)
        field = httpx.get(f"{server.url}/metadata", timeout=30).json()["serve"]["input_fields"][args.task]
        # Warm-up: first calls pay for lazy initialisation, and BentoML's batcher spends its
        # first ~10 calls learning how long a call takes before it batches adaptively.
        asyncio.run(_level(server.url, args.task, field, 4, args.warmup, args.max_seconds))
        before = _batch_sizes(server.url, args.task)
        rows = []
        for c in args.levels:
            row = asyncio.run(_level(server.url, args.task, field, c, args.requests, args.max_seconds))
            after = _batch_sizes(server.url, args.task)
            row["batches"] = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
            before = after
            rows.append(row)
            print(f"  {label:9s} c={c:<3d} {row['rps']:7.2f} req/s  p50 {row['p50_s']:6.2f}s  p99 {row['p99_s']:6.2f}s  "
                  f"{row['requests']:4d} req  {row['failures']} failed  model calls by batch size {row['batches']}  ({load_average()})",
                  flush=True)
        return rows
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="random tiny champions in a temp store (= --base tiny)")
    ap.add_argument("--base", help="register this base model (smollm2-135m, a path...) as every champion in a temp store")
    ap.add_argument("--task", default="smiles2formula", help="endpoint to load (default smiles2formula)")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--requests", type=int, default=128, help="requests per concurrency level")
    ap.add_argument("--warmup", type=int, default=24, help="requests before measuring")
    ap.add_argument("--max-seconds", type=float, default=120, help="stop issuing requests after this long per level")
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("--threads", type=int, help="torch threads in the server (OMP_NUM_THREADS); default: torch's own. "
                    "On a shared machine 1 avoids oversubscription stalls")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=list(LEVELS))
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of the two modes (a server start each)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="seqtune-serve-load-"))
    env = dict(os.environ)
    try:
        from seqtune.config import load_params

        cfg = load_params(args.params).serve  # validates the file, too
        raw = yaml.safe_load(args.params.read_text())
        base = "tiny" if args.tiny else args.base
        if base is None and not _have_champions(args.params, env):
            print("no champion for every task in the MLflow store: benchmarking random TINY champions "
                  "(run `dvc repro` first to benchmark the real ones)")
            base = "tiny"
        if base is not None:
            env = _temp_store(work, args.params, env, base)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        seqtune_cli("bento", "import", "--params", str(args.params), env=env)

        unbatched = dict(raw, serve={**raw.get("serve", {}), "max_batch_size": 1})
        modes = {"batched": raw, "unbatched": unbatched}
        print(f"serve_load: task {args.task}, {f'{base} (temp store)' if base else 'MLflow store'} champions, "
              f"max_batch_size {cfg.max_batch_size} vs 1, max_latency_ms {cfg.max_latency_ms}, decoding {cfg.decoding}, "
              f"{args.requests} requests per level, {os.cpu_count()} CPUs, torch threads {env.get('OMP_NUM_THREADS', 'default')}, {load_average()}")
        results: dict[str, dict[int, list[dict]]] = {label: {} for label in modes}
        for r in range(args.repeats):
            for label, content in modes.items():
                path = work / f"params-{label}.yaml"
                path.write_text(yaml.safe_dump(content, sort_keys=False))
                print(f"round {r + 1} of {args.repeats}, {label}:", flush=True)
                for row in run_mode(label, path, env, args, work):
                    results[label].setdefault(row["concurrency"], []).append(row)

        def med(label: str, c: int, key: str) -> float:
            return statistics.median(row[key] for row in results[label][c])

        def ratios(c: int) -> list[float]:
            return [b["rps"] / u["rps"] if u["rps"] else float("inf")
                    for b, u in zip(results["batched"][c], results["unbatched"][c])]

        print(f"\n| concurrency | batched req/s | p50 s | p99 s | unbatched req/s | p50 s | p99 s | ratio |  "
              f"(medians of {args.repeats} rounds)")
        print("|---|---|---|---|---|---|---|---|")
        figures: dict = {}
        for c in args.levels:
            rs = ratios(c)
            print(f"| {c} | {med('batched', c, 'rps'):.2f} | {med('batched', c, 'p50_s'):.2f} | {med('batched', c, 'p99_s'):.2f} | "
                  f"{med('unbatched', c, 'rps'):.2f} | {med('unbatched', c, 'p50_s'):.2f} | {med('unbatched', c, 'p99_s'):.2f} | "
                  f"{statistics.median(rs):.1f}x ({min(rs):.1f}-{max(rs):.1f}) |")
            for label in modes:
                for key in ("rps", "p50_s", "p99_s"):
                    figures[f"c{c}.{label}.{key}"] = spread([row[key] for row in results[label][c]])
                figures[f"c{c}.{label}.failures"] = sum(row["failures"] for row in results[label][c])
            if all(x != float("inf") for x in rs):
                figures[f"c{c}.batched_over_unbatched"] = spread(rs)
        if 32 in args.levels:
            rs = ratios(32)
            print(f"\nbatched/unbatched throughput at concurrency 32: {statistics.median(rs):.1f}x "
                  f"({min(rs):.1f}-{max(rs):.1f} over {args.repeats} rounds; goal >= 8x); {load_average()}")
        c = 32 if 32 in args.levels else args.levels[-1]
        headline = [k for k in (f"c{c}.batched_over_unbatched", f"c{c}.batched.rps", f"c{c}.unbatched.rps") if k in figures]
        write_result("serve_load", figures, headline=headline, config={
            "task": args.task, "champions": f"{base} (temp store)" if base else "MLflow store",
            "max_batch_size": cfg.max_batch_size, "max_latency_ms": cfg.max_latency_ms, "decoding": cfg.decoding,
            "requests_per_level": args.requests, "warmup": args.warmup, "max_seconds": args.max_seconds,
            "levels": args.levels, "repeats": args.repeats, "server_threads": env.get("OMP_NUM_THREADS", "default"),
            "cpus": os.cpu_count()})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
