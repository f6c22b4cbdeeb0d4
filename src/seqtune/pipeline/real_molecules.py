"""Stage `real_molecules`: real, unfragmented molecules that no training drew from, by size band.

    seqtune real-molecules            # or: dvc repro real_molecules

Why: a model trained and tested on BRICS fragments is judged on near-analogues of what it
learned. A chemist brings real compounds (solvents, reagents, metabolites, drugs), so every
model is also scored on those, by heavy-atom band (`real_molecules.band_edges`).

Reads `real_molecules.source` (`chedl`: the PubChem compounds with CAS numbers that the
`chemicals` package ships; `nci`: the first 5,000 compounds of the NCI Open Database that RDKit
ships, a second catalogue for a model trained on ChEDL (`molecules.source: chedl`); `file`: a
user's .smi/.csv/.tsv), orders the rows by a hash of
their key (reproducible, independent of file order), standardises them exactly as the
molecules stage does, removes every InChIKey of the molecules stage's train split, and keeps
the first `per_band` molecules of each band. Structure match needs no reference name (OPSIN
parses the model's name back to the input), so any real molecule set works; the data stage
still labels them per task, so exact match has a reference too.

Writes `data/real_molecules/molecules.parquet` (smiles, inchikey, heavy_atoms, band, hash,
name: the source's own IUPAC name where it has one) and `stats.json` (source, kept per band,
dropped by reason, how many were removed for being in training, and `same_catalogue`: whether
the molecules stage drew its training molecules from this catalogue too, so a report says
"held out from the training catalogue" rather than "a source training never drew from").
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, RealMoleculesConfig, load_section
from seqtune.files import atomic_dir, write_json
from seqtune.pipeline.molecule_sources import CHEDL_DIST, chedl_wheel, read_chedl, read_file
from seqtune.pipeline.standardise import split_hash, standardise_many

log = logging.getLogger(__name__)

COLUMNS = ["smiles", "inchikey", "heavy_atoms", "band", "hash", "name"]
CHUNK = 1000
"""Rows standardised at a time: the bands fill from the first few thousand rows."""


def band_label(heavy_atoms: int, edges: list[int]) -> str | None:
    """`lo-hi` (inclusive) of the band holding `heavy_atoms`, None outside [edges[0], edges[-1])."""
    for lo, hi in zip(edges, edges[1:]):
        if lo <= heavy_atoms < hi:
            return f"{lo}-{hi - 1}"
    return None


def band_labels(edges: list[int]) -> list[str]:
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])]


def read_rows(cfg: RealMoleculesConfig) -> tuple[list[tuple[str, str]], str]:
    """(SMILES, source name) rows in hash order, and a description of the source."""
    if cfg.source == "chedl":
        wheel = chedl_wheel()
        rows = {}
        for smiles, key, name in read_chedl(wheel):
            key = key or smiles
            if smiles and key not in rows:  # the small table comes first: its row wins
                rows[key] = (smiles, name)
        order = sorted(rows, key=split_hash)
        return [rows[k] for k in order], f"chedl ({CHEDL_DIST[0]}=={CHEDL_DIST[1]}: PubChem compounds with CAS numbers)"
    if cfg.source == "nci":
        smiles = list(dict.fromkeys(s for s in read_file(nci_file(), cfg.smiles_column) if s))
        return [(s, "") for s in sorted(smiles, key=split_hash)], "nci (NCI Open Database, first 5,000, shipped in RDKit)"
    path = Path(cfg.path or "")
    if not path.is_file():
        raise FileNotFoundError(f"real_molecules.path {str(path)!r} is not a file; point it at a .smi/.csv/.tsv/.sdf file")
    smiles = list(dict.fromkeys(s for s in read_file(path, cfg.smiles_column) if s))
    return [(s, "") for s in sorted(smiles, key=split_hash)], f"file {cfg.path}"


def nci_file() -> Path:
    """RDKit's copy of the NCI Open Database's first 5,000 compounds (SMILES<TAB>NSC number)."""
    import rdkit

    path = Path(rdkit.__file__).parent / "Data" / "NCI" / "first_5K.smi"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this RDKit build does not ship the NCI sample; "
                                "set real_molecules.source to chedl or file")
    return path


def same_catalogue(source: str) -> bool:
    """Whether the molecules stage's training source is the catalogue `source` names."""
    path = paths.MOLECULES / "stats.json"
    if not path.exists():
        return False
    return str(json.loads(path.read_text()).get("source", "")).split(" ")[0] == source


def train_inchikeys() -> set[str]:
    """InChIKeys of the molecules stage's train split: what a model may have trained on."""
    path = paths.MOLECULES / "molecules.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `seqtune molecules` (or `dvc repro molecules`) first, "
                                "so real molecules that occur in training can be removed")
    mols = pd.read_parquet(path, columns=["inchikey", "split"])
    return set(mols.inchikey[mols.split == "train"])


def select(rows: list[tuple[str, str]], cfg: RealMoleculesConfig, exclude: set[str]) -> tuple[pd.DataFrame, Counter]:
    """The first `per_band` standardised molecules of each band, in row order, none of them
    in `exclude`; and the drop counts by reason. Rows are standardised a chunk at a time until
    every band is full or `max_raw` rows are used (filling five bands of 60 takes ~2,000 rows)."""
    edges = cfg.band_edges
    dropped: Counter = Counter()
    kept: dict[str, list[tuple]] = {b: [] for b in band_labels(edges)}
    seen: set[str] = set()
    rows = rows[: cfg.max_raw]
    for start in range(0, len(rows), CHUNK):
        if all(len(v) >= cfg.per_band for v in kept.values()):
            break
        chunk = rows[start : start + CHUNK]
        for (_, name), st in zip(chunk, standardise_many([s for s, _ in chunk], edges[0], edges[-1] - 1, workers=cfg.workers)):
            if st.reason:
                dropped[st.reason] += 1
            elif st.inchikey in seen:
                dropped["duplicate"] += 1
            elif st.inchikey in exclude:
                seen.add(st.inchikey)
                dropped["in_training"] += 1
            else:
                seen.add(st.inchikey)  # type: ignore[arg-type]
                band = band_label(st.heavy_atoms, edges)
                if band is None or len(kept[band]) >= cfg.per_band:
                    dropped["band_full"] += 1
                else:
                    kept[band].append((st.smiles, st.inchikey, st.heavy_atoms, band, split_hash(st.inchikey), name))  # type: ignore[arg-type]
    df = pd.DataFrame([r for b in kept.values() for r in b], columns=COLUMNS).astype({"heavy_atoms": "int64"})
    return df, dropped


def main(*, params: Path = DEFAULT_PARAMS) -> dict:
    """Run the stage; returns the stats written to stats.json."""
    cfg: RealMoleculesConfig = load_section("real_molecules", params)
    start = time.perf_counter()
    if cfg.source == "none":
        df, dropped, described, read = pd.DataFrame(columns=COLUMNS), Counter(), "none", 0
    else:
        exclude = train_inchikeys()
        rows, described = read_rows(cfg)
        log.info("real molecules: up to %d per band from %d rows of %s", cfg.per_band, len(rows), described)
        df, dropped = select(rows, cfg, exclude)
        read = sum(dropped.values()) + len(df)
    counts = df["band"].value_counts() if len(df) else pd.Series(dtype=int)
    stats = {
        "source": described,
        "read": read,
        "band_edges": cfg.band_edges,
        "per_band": cfg.per_band,
        "kept": {b: int(counts.get(b, 0)) for b in band_labels(cfg.band_edges)},
        "dropped": dict(sorted(dropped.items())),
        "same_catalogue": cfg.source != "none" and same_catalogue(cfg.source),
        "seconds": round(time.perf_counter() - start, 2),
    }
    short = [b for b, n in stats["kept"].items() if n < cfg.per_band]
    if short and cfg.source != "none":
        log.warning("real molecules: bands %s have fewer than %d molecules (raise real_molecules.max_raw)", short, cfg.per_band)
    with atomic_dir(paths.REAL_MOLECULES) as out:
        df.to_parquet(out / "molecules.parquet", index=False)
        write_json(out / "stats.json", stats)
    log.info("real molecules: %s per band (%s), %d in training removed, %.1fs",
             stats["kept"], described, dropped.get("in_training", 0), stats["seconds"])
    return stats
