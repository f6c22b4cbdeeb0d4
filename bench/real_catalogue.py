"""A model folder scored on real molecules of one catalogue, by heavy-atom band, as served.

    .venv/bin/python bench/real_catalogue.py --source nci [--model data/models/smiles2iupac] [--per-band 50]
        [--decoding verified] [--num-beams 4]      # -> reports/bench/real_catalogue_SOURCE.json

The evaluate stage scores real molecules from `real_molecules.source` and logs them into the
model's MLflow run. When the model trained on that same catalogue (`molecules.source: chedl`),
those bands are held out by InChIKey but not by catalogue; this scores the same model on
another catalogue (`nci`: the NCI Open Database's first 5,000 compounds, shipped in RDKit)
without touching the run, selected exactly as the real_molecules stage selects (hash order,
standardised, every InChIKey of `data/molecules`' train split removed, `--per-band` per band)
and decoded as the service decodes. Structure match is OPSIN's parse of the answer against the
input, so no reference name is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="nci", choices=["nci", "chedl"])
    ap.add_argument("--task", default="smiles2iupac")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default data/models/TASK)")
    ap.add_argument("--per-band", type=int, default=50)
    ap.add_argument("--decoding", default="verified", choices=["greedy", "verified"])
    ap.add_argument("--num-beams", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    a = ap.parse_args()

    from seqtune.config import RealMoleculesConfig
    from seqtune.inference.loader import load_generator
    from seqtune.pipeline.real_molecules import read_rows, select, train_inchikeys
    from seqtune.tasks import get_task

    model = a.model or REPO / "data" / "models" / a.task
    cfg = RealMoleculesConfig(source=a.source, per_band=a.per_band)
    rows, described = read_rows(cfg)
    df, dropped = select(rows, cfg, train_inchikeys())
    task = get_task(a.task)
    gen = load_generator(model)
    smiles = df.smiles.tolist()
    start = time.perf_counter()
    order = sorted(range(len(smiles)), key=lambda i: len(smiles[i]))  # length-sorted batches pad less
    preds = [None] * len(smiles)
    for s in range(0, len(order), a.batch_size):
        idx = order[s : s + a.batch_size]
        for i, p in zip(idx, gen.predict([smiles[i] for i in idx], decoding=a.decoding, num_beams=a.num_beams)):
            preds[i] = p
        print(f"  {min(s + a.batch_size, len(order))}/{len(order)} molecules", flush=True)
    seconds = time.perf_counter() - start
    scores = task.score_batch([p.output for p in preds], [{"smiles": s, "target": n or ""} for s, n in zip(smiles, df.name)])
    bands = {}
    for band in dict.fromkeys(df.band):
        idx = [i for i, b in enumerate(df.band) if b == band]
        sm = sum(scores[i]["structure_match"] for i in idx) / len(idx)
        bands[band] = {"n": len(idx), "structure_match": round(sm, 4), "se": round(math.sqrt(sm * (1 - sm) / len(idx)), 4),
                       "parse_rate": round(sum(scores[i]["parse_rate"] for i in idx) / len(idx), 4)}
    examples = [{"smiles": smiles[i], "answer": preds[i].output, "right": bool(scores[i]["structure_match"])}
                for i in range(0, len(smiles), max(1, len(smiles) // 12))]
    figures = {f"real_{band}.{k}": v for band, d in bands.items() for k, v in d.items()}
    figures["items_per_s"] = round(len(smiles) / seconds, 3)
    write_result(f"real_catalogue_{a.source}", figures,
                 headline=[f"real_{b}.structure_match" for b in bands][:3],
                 config={"source": described, "model": str(model), "task": a.task, "decoding": a.decoding,
                         "num_beams": a.num_beams, "per_band": a.per_band, "dropped": dict(dropped), "examples": examples})
    print(json.dumps({"source": described, "decoding": a.decoding, "bands": bands, "seconds": round(seconds, 1)}, indent=2))

if __name__ == "__main__":
    main()
