"""Verified smiles2iupac pairs per second, for 10k molecules from moses, on both cores.

    .venv/bin/python bench/data_throughput.py                 # n=10000, workers=2, chunk 512
    .venv/bin/python bench/data_throughput.py --n 2000 --workers 1

Runs the data stage's own labelling loop (openclatura naming in worker processes, one OPSIN
call per chunk overlapped with naming the next chunk) without the label cache, and prints
the figure with the load average: other work on the cores lowers it 2-8x, so benchmark on
a quiet machine. Goal: >= 150 verified pairs/s on 2 free cores. Writes the figures to
reports/bench/data_throughput.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import write_result  # noqa: E402
from seqtune.config import DataConfig, MoleculesConfig
from seqtune.pipeline.data import collect
from seqtune.pipeline.molecule_sources import iter_smiles
from seqtune.pipeline.molecules import build_table
from seqtune.tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="molecules to label")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=DataConfig().chunk_size)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # Standardise a bit more than n raw records (some are dropped); not part of the timing.
    mcfg = MoleculesConfig(source="moses", max_raw=int(args.n * 1.2) + 100, workers=args.workers)
    mols, _ = build_table(list(iter_smiles(mcfg)), mcfg)
    mols = mols.head(args.n)
    dcfg = DataConfig(n_train=len(mols), workers=args.workers, chunk_size=args.chunk_size)

    load_before = os.getloadavg()
    cpu0 = os.times()
    t0 = time.perf_counter()
    rows, dropped, _ = collect(mols, len(mols), get_task("smiles2iupac"), dcfg, None, desc="label")
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    load_after = os.getloadavg()
    # CPU time of this process, its naming workers and the OPSIN JVMs: unlike pairs/s it
    # hardly depends on what else runs, so `cores / cpu_per_pair` estimates a quiet machine.
    cpu = sum(getattr(cpu1, f) - getattr(cpu0, f) for f in ("user", "system", "children_user", "children_system"))

    print(f"molecules:      {len(mols)} (moses, heavy atoms {mcfg.min_heavy_atoms}-{mcfg.max_heavy_atoms})")
    print(f"verified pairs: {len(rows)} ({len(rows) / len(mols):.1%}); dropped {dict(dropped)}")
    print(f"seconds:        {seconds:.1f} (workers={args.workers}, chunk_size={args.chunk_size}, cpus={os.cpu_count()})")
    print(f"pairs/s:        {len(rows) / seconds:.1f}")
    print(f"cpu ms/pair:    {cpu / len(rows) * 1000:.1f} (=> ~{args.workers * len(rows) / cpu:.0f} pairs/s on {args.workers} free cores)")
    print(f"load average:   before {load_before[0]:.2f}, after {load_after[0]:.2f} (1-min; 2 = both cores busy)")
    figures = {"pairs_per_s": round(len(rows) / seconds, 1), "verified_pairs": len(rows), "molecules": len(mols),
               "verified_share": round(len(rows) / len(mols), 4), "labelling_seconds": round(seconds, 1),
               "cpu_ms_per_pair": round(cpu / len(rows) * 1000, 2),
               "pairs_per_s_on_free_cores_estimate": round(args.workers * len(rows) / cpu, 1)}
    if dropped:
        figures["dropped"] = {str(k): int(v) for k, v in dict(dropped).items()}
    write_result("data_throughput", figures, headline=["pairs_per_s", "pairs_per_s_on_free_cores_estimate"], config={
        "source": "moses", "min_heavy_atoms": mcfg.min_heavy_atoms, "max_heavy_atoms": mcfg.max_heavy_atoms,
        "n": args.n, "workers": args.workers, "chunk_size": args.chunk_size, "cpus": os.cpu_count(), "goal_pairs_per_s": 150})


if __name__ == "__main__":
    main()
