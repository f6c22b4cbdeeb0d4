"""What checking names with OPSIN costs: a one-off JVM per call (the jar over a temp file)
vs this process's long-lived OPSIN (`seqtune.chem.OpsinProcess`), same names, same answers.

    .venv/bin/python bench/opsin_calls.py                   # 2,000 names of data/datasets/smiles2iupac
    .venv/bin/python bench/opsin_calls.py --names 500 --single 20

Times one name (what a lone served request's check parses) `--single` times each way and
`--names` names in one call (an evaluation batch, a data chunk), prints medians, the warm
process's memory, whether the answers are identical, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _names(n: int) -> list[str]:
    path = REPO / "data" / "datasets" / "smiles2iupac" / "train.parquet"
    if path.exists():
        import pandas as pd

        names = pd.read_parquet(path, columns=["target"]).target.tolist()
    else:
        from seqtune.chem import WARM_NAMES

        names = list(WARM_NAMES)
    return (names * (n // len(names) + 1))[:n]


def main() -> None:
    import psutil

    from seqtune import chem

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=2000)
    ap.add_argument("--single", type=int, default=10)
    a = ap.parse_args()
    chem.require_java()
    names = _names(a.names)

    def timed(fn, arg) -> tuple[float, list]:
        t = time.perf_counter()
        out = fn(arg)
        return time.perf_counter() - t, out

    once_one = [timed(chem._opsin_once, [n])[0] for n in names[: a.single]]
    t_once, out_once = timed(chem._opsin_once, names)
    first, _ = timed(chem.opsin_to_smiles, names[:1])  # starts the JVM
    warm_one = [timed(chem.opsin_to_smiles, [n])[0] for n in names[: a.single]]
    t_warm, out_warm = timed(chem.opsin_to_smiles, names)
    rss = psutil.Process(chem._opsin_process()._proc.pid).memory_info().rss / 2**20
    same = sum((x or None) == y for x, y in zip(out_once, out_warm))
    print(f"one name:   one-off JVM p50 {1000 * statistics.median(once_one):7.1f} ms; long-lived "
          f"p50 {1000 * statistics.median(warm_one):7.2f} ms (its first call, starting the JVM: {first:.2f} s)")
    print(f"{len(names)} names: one-off JVM {t_once:.2f} s; long-lived {t_warm:.2f} s ({t_once / t_warm:.1f}x)")
    print(f"same answers: {same}/{len(names)}; long-lived OPSIN RSS {rss:.0f} MiB")
    print("load average %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
