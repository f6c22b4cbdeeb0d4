"""Which test items a mixed-data model names right: BRICS fragments vs enumerated simple organics.

    .venv/bin/python bench/mix_origin.py [--task smiles2iupac] [--params params.yaml] [--out reports/bench/mix_origin.json]

With `molecules.simple_organics` > 0 the test split holds both kinds, so the test score of a
mixed run is not comparable with a fragments-only run's. This splits the last evaluation's
test predictions (`data/predictions/TASK.jsonl`) by origin: an item is "fragment" when its
canonical SMILES is one of the source's BRICS fragments under the same molecules settings
(read and fragmented again, ~2 minutes for make run's), else "enumerated". The
fragment share is what compares with a fragments-only run (same source, same parent split);
the real-molecule bands (`metrics/TASK.json` -> real) compare directly.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="smiles2iupac")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench" / "mix_origin.json")
    a = ap.parse_args()

    from seqtune.chem import canonical_smiles
    from seqtune.config import load_section
    from seqtune.pipeline.molecule_sources import iter_smiles
    from seqtune.pipeline.molecules import candidates
    from seqtune.tasks import get_task

    cfg = load_section("molecules", a.params).model_copy(update={"simple_organics": 0})
    primary = get_task(a.task).primary_metric
    frags, _, _ = candidates(list(iter_smiles(cfg)), cfg)  # the source's own molecules, nothing enumerated
    fragments = {canonical_smiles(s) for s in frags}
    items = [json.loads(line) for line in (REPO / "data" / "predictions" / f"{a.task}.jsonl").read_text().splitlines()]
    by: dict[str, list[float]] = {"fragment": [], "enumerated": []}
    for it in items:
        by["fragment" if canonical_smiles(it["smiles"]) in fragments else "enumerated"].append(float(it[primary]))
    metrics = json.loads((REPO / "metrics" / f"{a.task}.json").read_text())
    result = {
        "task": a.task, "metric": primary,
        "test_by_origin": {k: {"n": len(v), primary: round(sum(v) / len(v), 4) if v else None,
                               "se": round(math.sqrt(p * (1 - p) / len(v)), 4) if v and (p := sum(v) / len(v)) is not None else None}
                           for k, v in by.items()},
        "test_all": {"n": len(items), primary: metrics.get(primary)},
        "real": {b: {"n": v.get("n"), primary: v.get(primary)} for b, v in (metrics.get("real") or {}).items()},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
