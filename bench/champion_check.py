"""Serve a task's registered champion and ask them about well-known small molecules.

    .venv/bin/python bench/champion_check.py                       # params.yaml's serve.decoding (smiles2iupac: verified)
    .venv/bin/python bench/champion_check.py --decoding greedy     # the same champion, greedy

What a user sees after `make specialist && make serve`: imports the task's champion from the
MLflow store into the BentoML store (`seqtune bento import`), starts the real service
(`bentoml serve service.service:Seqtune`, loopback only), sends each molecule as its own
request and then all of them as one request, and prints per molecule the answer, whether
OPSIN parses it back to the input structure (checked again here, in this process), whether
the molecule was in the champion's training data, and the latencies. The check here is the
task's own (`Task.verify`): the same OPSIN round trip that sets the service's `verified`
flag and that `structure_match` scores, so "`verified` agrees with the check" holds by
construction (it tests that the flag reaches the response intact, not that the flag is
right), and so does a `verified: true` answer being a right structure. Prints the load
average: other work on the cores skews the timings. Writes the figures to
reports/bench/champion_check.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import os
import statistics
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
from common import REPO, Server, load_average, seqtune_cli, write_result  # noqa: E402
from known_molecules import KNOWN  # noqa: E402


def _training_keys(task: str) -> set[str]:
    """InChIKeys of the molecules the current workspace's model of `task` trained on."""
    import pandas as pd

    path = REPO / "data" / "datasets" / task / "train.parquet"
    return set(pd.read_parquet(path, columns=["inchikey"]).inchikey) if path.exists() else set()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="smiles2iupac")
    ap.add_argument("--decoding", choices=["greedy", "verified"], default=None, help="default: params.yaml's serve.decoding for the task")
    ap.add_argument("--ready-timeout", type=float, default=300)
    a = ap.parse_args()

    from rdkit import Chem

    from seqtune.tasks import get_task

    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true")
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlflow.db'}")
    env.setdefault("BENTOML_HOME", str(REPO / "bentoml_home"))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tasks"] = [a.task]  # serve only the champion under test (other tasks may have none yet)
    if a.decoding:
        raw["serve"]["decoding"] = a.decoding
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump(raw, sort_keys=False))
        seqtune_cli("bento", "import", "--params", str(params), env=env)
        server = Server(params, env, Path(tmp) / "server.log")
        try:
            server.wait_ready(a.ready_timeout)
            meta = httpx.post(f"{server.url}/metadata", json={}, timeout=60).json()
            field = "names" if get_task(a.task).source_kind == "name" else "smiles"
            single, results = [], []
            for _, smi in KNOWN:
                t0 = time.perf_counter()
                r = httpx.post(f"{server.url}/{a.task}", json={field: [smi]}, timeout=600)
                single.append(time.perf_counter() - t0)
                r.raise_for_status()
                results.append(r.json()[0])
            t0 = time.perf_counter()
            batch = httpx.post(f"{server.url}/{a.task}", json={field: [s for _, s in KNOWN]}, timeout=600)
            batch_s = time.perf_counter() - t0
            batch.raise_for_status()
        finally:
            server.stop()
    task = get_task(a.task)
    ok = task.verify([s for _, s in KNOWN], [r["output"] or "" for r in results]) or [None] * len(KNOWN)
    seen = _training_keys(a.task)
    info = meta.get("tasks", {}).get(a.task, {})  # what the service itself says it serves
    head = f"{info['answer_vocab']} answer tokens" if info.get("answer_vocab") else "full vocabulary"
    print(f"# {a.task} champion: v{info.get('version', '?')}, decoding {info.get('decoding', '?')}, LM head over {head}; "
          f"{load_average()}")
    print(f"| molecule | SMILES | answer | right structure | service verified | in training |")
    print("|---|---|---|---|---|---|")
    for (name, smi), r, good in zip(KNOWN, results, ok):
        key = Chem.MolToInchiKey(Chem.MolFromSmiles(smi))
        print(f"| {name} | `{smi}` | {r['output']} | {good} | {r.get('verified')} | {key in seen} |")
    right = sum(bool(g) for g in ok)
    unseen = [g for (_, s), g in zip(KNOWN, ok) if Chem.MolToInchiKey(Chem.MolFromSmiles(s)) not in seen]
    print(f"\nright structure: {right}/{len(KNOWN)} ({sum(map(bool, unseen))}/{len(unseen)} of those not in training)")
    agree = sum((r.get("verified") is True) == bool(g) for r, g in zip(results, ok))
    print(f"service `verified` agrees with the same OPSIN check rerun here on {agree}/{len(KNOWN)} "
          f"(by construction: it tests the flag's plumbing, not its precision)")
    print(f"single-request latency: p50 {statistics.median(single):.2f} s, max {max(single):.2f} s; "
          f"all {len(KNOWN)} in one request: {batch_s:.2f} s")
    figures = {"right_structure": right, "molecules": len(KNOWN), "right_structure_not_in_training": sum(map(bool, unseen)),
               "not_in_training": len(unseen), "verified_flag_agrees_with_the_same_check_rerun": agree,
               "single_request_s": {"p50": round(statistics.median(single), 3), "max": round(max(single), 3)},
               "all_in_one_request_s": round(batch_s, 3)}
    write_result("champion_check", figures, headline=["right_structure", "single_request_s", "all_in_one_request_s"],
                 config={"task": a.task, "champion_version": info.get("version"), "decoding": info.get("decoding"),
                         "head": head, "molecules": "bench/known_molecules.py"})


if __name__ == "__main__":
    main()
