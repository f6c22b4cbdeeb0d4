"""What checking names with OPSIN costs: a one-off JVM per call (the jar over a temp file)
vs this process's long-lived OPSIN (`seqtune.chem.opsin_jvm.OpsinProcess`), same names, same answers.

    .venv/bin/python bench/opsin_calls.py                   # 2,000 names of data/datasets/smiles2iupac
    .venv/bin/python bench/opsin_calls.py --names 500 --single 20

Times one name (what a lone served request's check parses) `--single` times each way, the two
ways taking turns name by name, and `--names` names in one call (an evaluation batch, a data
chunk) in `--repeats` alternating rounds; prints medians (and min-max), the warm process's
memory, whether the answers are identical, and the load average. The long-lived process is
started (and its start timed) first, so it sits idle while the one-off JVMs run. Writes the
figures to reports/bench/opsin_calls.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, alternate, spread, write_result  # noqa: E402

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
    from seqtune.chem import opsin_jvm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=2000)
    ap.add_argument("--single", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of the --names call")
    a = ap.parse_args()
    opsin_jvm.require_java()
    names = _names(a.names)

    def timed(fn, arg) -> tuple[float, list]:
        t = time.perf_counter()
        out = fn(arg)
        return time.perf_counter() - t, out

    first, _ = timed(chem.opsin_to_smiles, names[:1])  # starts the long-lived JVM
    once_one, warm_one = [], []
    for n in names[: a.single]:  # name by name, the two ways taking turns
        once_one.append(timed(opsin_jvm.run_once, [n])[0])
        warm_one.append(timed(chem.opsin_to_smiles, [n])[0])
    outs: dict[str, list] = {}

    def call(side, fn):
        def work():
            outs[side] = fn(names)
        return work

    rounds = alternate({"once": call("once", opsin_jvm.run_once), "warm": call("warm", chem.opsin_to_smiles)}, a.repeats)
    t_once, t_warm = rounds["once"], rounds["warm"]
    out_once, out_warm = outs["once"], outs["warm"]
    ratios = [o / w for o, w in zip(t_once, t_warm)]
    rss = psutil.Process(opsin_jvm.shared_process()._proc.pid).memory_info().rss / 2**20
    same = sum((x or None) == y for x, y in zip(out_once, out_warm))
    print(f"one name:   one-off JVM p50 {1000 * statistics.median(once_one):7.1f} ms; long-lived "
          f"p50 {1000 * statistics.median(warm_one):7.2f} ms (its first call, starting the JVM: {first:.2f} s)")
    print(f"{len(names)} names, {a.repeats} alternating rounds: one-off JVM {statistics.median(t_once):.2f} s "
          f"({min(t_once):.2f}-{max(t_once):.2f}); long-lived {statistics.median(t_warm):.2f} s "
          f"({min(t_warm):.2f}-{max(t_warm):.2f}); {statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f})")
    print(f"same answers: {same}/{len(names)}; long-lived OPSIN RSS {rss:.0f} MiB")
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    write_result("opsin_calls", {
        "one_name_ms.one_off_jvm": spread([1000 * t for t in once_one]),
        "one_name_ms.long_lived": spread([1000 * t for t in warm_one]),
        "names_call_s.one_off_jvm": spread(t_once), "names_call_s.long_lived": spread(t_warm),
        "names_call.ratio_one_off_over_long_lived": spread(ratios),
        "long_lived_first_call_s": round(first, 2), "same_answers": same, "names": len(names),
        "long_lived_rss_mib": round(rss),
    }, headline=["one_name_ms.one_off_jvm", "one_name_ms.long_lived", "names_call.ratio_one_off_over_long_lived"],
        config={"names": a.names, "single": a.single, "repeats": a.repeats,
                "source": "data/datasets/smiles2iupac/train.parquet targets"
                if (REPO / "data" / "datasets" / "smiles2iupac" / "train.parquet").exists() else "chem.WARM_NAMES"})

if __name__ == "__main__":
    main()
