"""How near are test items to training? The fragment-level split vs the parent split, and the real molecules.

    .venv/bin/python bench/split_leakage.py                      # make run's molecules (MOSES, BRICS 3-12)
    .venv/bin/python bench/split_leakage.py --max-raw 3000       # quicker

Builds the molecules table twice from the same records, as the molecules stage does
(`molecules.split_level: fragment`, the split the sweep files pin for their recorded runs, and
`parent`, the shipped one), plus the real-molecule bands (stage real_molecules), and prints
for the first `--n-test` test items of each:
  - the share that a train-side source molecule also gives as a fragment (so its siblings, made
    from that molecule, are training items; 0 by construction under the parent split);
  - the nearest training molecule's Tanimoto (Morgan r=2, 2048 bits), mean and share >= 0.7.
A model scored on near-analogues of what it learned looks better than it is on what a user
brings: these numbers say how near each evaluation set sits. Writes the figures (`<set>.<figure>`:
`test_fragment_split`, `test_parent_split`, `real_<band>`) with the command, the CPU kind and the
load to reports/bench/split_leakage.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))
os.chdir(REPO)  # data/downloads: the fetched wheels are reused


def nearest_train(test_fps, train_fps) -> list[float]:
    from rdkit import DataStructs

    return [max(DataStructs.BulkTanimotoSimilarity(fp, train_fps)) if train_fps else 0.0 for fp in test_fps]


def fingerprints(smiles):
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]


def summary(name: str, sims: list[float], sibling: float | None, n_train: int) -> dict:
    out = {"set": name, "n": len(sims), "train_molecules": n_train,
           "nearest_train_tanimoto_mean": round(sum(sims) / max(len(sims), 1), 3),
           "share_nearest_ge_0.7": round(sum(s >= 0.7 for s in sims) / max(len(sims), 1), 3)}
    if sibling is not None:
        out["share_also_from_a_train_molecule"] = round(sibling, 3)
    return out


def figures_of(rows: list[dict]) -> dict[str, float | int]:
    """The rows as flat figures: `test_fragment_split.<figure>`, `test_parent_split.<figure>`,
    `real_<band>.<figure>`."""
    out: dict[str, float | int] = {}
    for row in rows:
        s = row["set"]
        key = (f"real_{s.removeprefix('real molecules ')}" if s.startswith("real molecules ")
               else "test_" + s.removeprefix("test, ").replace("-level split", "_split"))
        out.update({f"{key}.{k}": v for k, v in row.items() if k != "set"})
    return out


NOTE = ("test_parent_split.share_also_from_a_train_molecule is 0 by construction (the parent split puts a fragment "
        "with any train-side source molecule in train: molecules.SPLIT_PRIORITY): it checks the split, it measures "
        "nothing.")
HEADLINE = ["test_fragment_split.share_also_from_a_train_molecule", "test_parent_split.share_also_from_a_train_molecule",
            "test_fragment_split.nearest_train_tanimoto_mean", "test_parent_split.nearest_train_tanimoto_mean",
            "real_3-12.nearest_train_tanimoto_mean"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-raw", type=int, default=15000, help="MOSES records (make run reads 15,000)")
    ap.add_argument("--max-heavy", type=int, default=12)
    ap.add_argument("--n-test", type=int, default=500)
    a = ap.parse_args()

    import pandas as pd

    from seqtune.config import MoleculesConfig, RealMoleculesConfig
    from seqtune.pipeline import molecules, real_molecules
    from seqtune.pipeline.molecule_sources import iter_smiles

    base = MoleculesConfig(source="moses", fragments="brics", max_raw=a.max_raw, max_heavy_atoms=a.max_heavy,
                           val_fraction=0.05, workers=2)
    raw = list(iter_smiles(base))
    smiles, _, parents = molecules.candidates(raw, base.model_copy(update={"split_level": "parent"}))
    rows = []
    train_fps_by_level = {}
    for level in ("fragment", "parent"):
        cfg = base.model_copy(update={"split_level": level})
        df, _ = molecules.build_table(smiles, cfg, parents if level == "parent" else None)
        train = df[df.split == "train"]
        test = df[df.split == "test"].head(a.n_test)
        # Which source records gave each molecule: a test item whose record also gave a train item has a
        # parent or a sibling in training.
        std_of = {}
        for smi in smiles:
            st = molecules.standardise(smi, 1, 10**6)
            if st.inchikey:
                std_of.setdefault(st.inchikey, set()).update(parents.get(smi, ()))
        # A test item that a train-side source molecule also gives: its parent (a molecule the
        # split put in train) had it as a fragment, and its siblings are in training.
        sibling = sum(any(molecules.split_of(molecules.split_hash(q), cfg.test_fraction, cfg.val_fraction) == "train"
                          for q in std_of.get(k, ())) for k in test.inchikey) / max(len(test), 1)
        train_fps = fingerprints(train.smiles)
        train_fps_by_level[level] = (train_fps, set(train.inchikey))
        rows.append(summary(f"test, {level}-level split", nearest_train(fingerprints(test.smiles), train_fps), sibling,
                            len(train)))
        print(json.dumps(rows[-1]))
    # The real molecules, against the parent split's train molecules (what make run now trains on).
    train_fps, train_keys = train_fps_by_level["parent"]
    rcfg = RealMoleculesConfig(per_band=100, workers=2)
    real_rows, _ = real_molecules.read_rows(rcfg)
    real, _ = real_molecules.select(real_rows, rcfg, train_keys)
    for band, group in real.groupby("band", sort=False):
        rows.append(summary(f"real molecules {band}", nearest_train(fingerprints(group.smiles), train_fps), None, len(train_fps)))
        print(json.dumps(rows[-1]))
    print(pd.DataFrame(rows).to_string(index=False))
    write_result("split_leakage", figures_of(rows), headline=HEADLINE, note=NOTE, config={
        "source": "moses", "fragments": "brics", "max_raw": a.max_raw, "min_heavy_atoms": base.min_heavy_atoms,
        "max_heavy_atoms": a.max_heavy, "n_test": a.n_test, "real_per_band": rcfg.per_band,
        "fingerprint": "Morgan r=2, 2048 bits"})


if __name__ == "__main__":
    main()
