"""Which test items a mixed-data model names right: BRICS fragments vs enumerated simple organics.

    .venv/bin/python bench/mix_origin.py [--task smiles2iupac] [--params params.yaml]

With `molecules.simple_organics` > 0 the test split holds both kinds, so the test score of a
mixed run is not comparable with a fragments-only run's. This splits the last evaluation's
test predictions (`data/predictions/TASK.jsonl`) by origin: an item is "fragment" when its
canonical SMILES is one of the source's BRICS fragments under the same molecules settings
(read and fragmented again, ~2 minutes for make run's), else "enumerated". The
fragment share is what compares with a fragments-only run (same source, same parent split);
the real-molecule bands (`metrics/TASK.json` -> real) compare directly. Writes the figures
(`test_fragment.<metric>`, `test_enumerated.<metric>`, their `.n` and `.se`, `test_all.*`,
`real_<band>.*`) to reports/bench/mix_origin.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, write_result  # noqa: E402


def figures_of(result: dict) -> dict[str, float | int]:
    """The nested result as flat figures (`test_fragment.n`, `real_3-12.structure_match`, ...),
    None (an empty group) left out."""
    groups = {f"test_{k}": v for k, v in result["test_by_origin"].items()}
    groups["test_all"] = result["test_all"]
    groups.update({f"real_{b}": v for b, v in result["real"].items()})
    return {f"{g}.{k}": x for g, v in groups.items() for k, x in v.items() if x is not None}


def headline(primary: str) -> list[str]:
    return [f"test_fragment.{primary}", f"test_enumerated.{primary}", f"real_3-12.{primary}", f"real_13-15.{primary}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="smiles2iupac")
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
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
    print(json.dumps(result, indent=2))
    run_id = REPO / "data" / "models" / a.task / "run_id"
    figures = figures_of(result)
    write_result("mix_origin", figures, headline=[h for h in headline(primary) if h in figures], config={
        "task": a.task, "metric": primary, "params": str(a.params.relative_to(REPO) if a.params.is_relative_to(REPO) else a.params),
        "predictions": f"data/predictions/{a.task}.jsonl", "run_id": run_id.read_text().strip() if run_id.exists() else None})


if __name__ == "__main__":
    main()
