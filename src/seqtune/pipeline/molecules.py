"""Stage `molecules`: read a molecule source, standardise, dedupe and split train/test.

    seqtune molecules            # or: dvc repro molecules

Writes `data/molecules/molecules.parquet` (smiles, inchikey, heavy_atoms, split, hash; rows
sorted by hash) and `data/molecules/stats.json` (records read, kept, dropped by reason).

The split is a pure function of each molecule's own key: sha1 of its InChIKey (or of its
Murcko scaffold with `split_by: scaffold`) mapped to [0, 1) and compared with
`test_fraction`. Adding molecules or asking for more training data therefore never moves a
molecule between train and test, and downstream stages take prefixes in hash order.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, MoleculesConfig, load_section
from seqtune.io import atomic_dir, write_json
from seqtune.pipeline.molecule_sources import iter_smiles, open_source

log = logging.getLogger(__name__)

COLUMNS = ["smiles", "inchikey", "heavy_atoms", "split", "hash"]


class Standardised(NamedTuple):
    smiles: str | None = None
    inchikey: str | None = None
    heavy_atoms: int = 0
    scaffold: str | None = None
    reason: str | None = None
    """Why the record was dropped (None when kept)."""


def standardise(raw: str, min_heavy: int = 1, max_heavy: int = 10**6, want_scaffold: bool = False) -> Standardised:
    """Standardise one raw SMILES with RDKit, or say why it is dropped.

    Clean up (normalise groups, disconnect metals), keep the largest fragment (drops salts and
    solvents), neutralise where a neutral form exists, then refuse what names can't handle
    (metals, radicals, isotopes, wildcards) and out-of-range sizes."""
    from rdkit import Chem
    from rdkit.Chem.MolStandardize import rdMolStandardize
    from rdkit.Chem.Scaffolds import MurckoScaffold

    from seqtune.chem import exclusion_reason, mol_from_smiles

    if not raw or not raw.strip():
        return Standardised(reason="empty_record")
    mol = mol_from_smiles(raw)
    if mol is None:
        return Standardised(reason="unparsable")
    try:
        mol = rdMolStandardize.Cleanup(mol)
        mol = rdMolStandardize.FragmentParent(mol)
        mol = rdMolStandardize.Uncharger().uncharge(mol)
        Chem.SanitizeMol(mol)
    except Exception:  # RDKit raises on a few exotic valence/aromaticity cases
        return Standardised(reason="standardisation_failed")
    reason = exclusion_reason(mol)
    if reason:
        return Standardised(reason=reason)
    heavy = mol.GetNumHeavyAtoms()
    if heavy < min_heavy:
        return Standardised(reason="too_small")
    if heavy > max_heavy:
        return Standardised(reason="too_large")
    # Round-trip once so the stored SMILES is a fixed point of RDKit canonicalisation:
    # the tasks re-canonicalise inputs and must get this exact string back.
    again = mol_from_smiles(Chem.MolToSmiles(mol))
    if again is None:
        return Standardised(reason="standardisation_failed")
    smiles = Chem.MolToSmiles(again)
    inchikey = Chem.MolToInchiKey(again)
    if not inchikey:
        return Standardised(reason="no_inchikey")
    scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=again) if want_scaffold else None
    return Standardised(smiles, inchikey, heavy, scaffold)


def split_hash(key: str) -> str:
    """Hex sha1 of a molecule's split key: its position in the fixed hash order."""
    return hashlib.sha1(key.encode()).hexdigest()


def split_of(hash_hex: str, test_fraction: float) -> str:
    """'test' when the hash falls in the first `test_fraction` of hash space; depends on
    nothing but the hash, so a molecule's split never changes with data sizes."""
    return "test" if int(hash_hex[:15], 16) / 16**15 < test_fraction else "train"


def _standardise_args(args: tuple[str, int, int, bool]) -> Standardised:
    return standardise(*args)


def standardise_all(raw: list[str], cfg: MoleculesConfig) -> list[Standardised]:
    """Standardise in parallel over `cfg.workers` processes, order preserved."""
    args = [(r, cfg.min_heavy_atoms, cfg.max_heavy_atoms, cfg.split_by == "scaffold") for r in raw]
    bar = dict(total=len(args), desc="standardise", unit="mol", mininterval=1.0)
    if cfg.workers == 1 or len(args) < 1000:
        return [_standardise_args(a) for a in tqdm(args, **bar)]
    with ProcessPoolExecutor(cfg.workers) as ex:
        return list(tqdm(ex.map(_standardise_args, args, chunksize=256), **bar))


def build_table(raw: list[str], cfg: MoleculesConfig) -> tuple[pd.DataFrame, Counter]:
    """The molecules table (deduped, split, sorted by hash) and the drop counts by reason."""
    dropped: Counter = Counter()
    seen: set[str] = set()
    rows = []
    for st in standardise_all(raw, cfg):
        if st.reason:
            dropped[st.reason] += 1
            continue
        if st.inchikey in seen:  # first occurrence in file order wins: deterministic
            dropped["duplicate"] += 1
            continue
        seen.add(st.inchikey)
        h = split_hash(st.scaffold if cfg.split_by == "scaffold" else st.inchikey)  # type: ignore[arg-type]
        rows.append((st.smiles, st.inchikey, st.heavy_atoms, split_of(h, cfg.test_fraction), h))
    df = pd.DataFrame(rows, columns=COLUMNS).astype({"heavy_atoms": "int64"})
    # InChIKey breaks ties (scaffold splits share a hash): the order is total and stable.
    df = df.sort_values(["hash", "inchikey"], kind="stable").reset_index(drop=True)
    return df, dropped


def candidates(raw: list[str], cfg: MoleculesConfig) -> tuple[list[str], Counter]:
    """The SMILES to standardise from the records read: the records themselves, or (with
    `fragments: brics`) their distinct fragments in range, and the records that gave none or
    were longer than `max_record_chars`, counted by reason. Shared with the token sampler so a sweep's cost counts what runs."""
    drops: Counter = Counter()
    fits = [r for r in raw if len(r) <= cfg.max_record_chars]
    if len(fits) < len(raw):  # before RDKit sees them: parsing one 10 MB line took minutes
        drops["record_too_long"] = len(raw) - len(fits)
        raw = fits
    if cfg.fragments == "none":
        return raw, drops
    from seqtune.pipeline.fragments import fragment_all

    pieces: list[str] = []
    for frags in fragment_all(raw, cfg.min_heavy_atoms, cfg.max_heavy_atoms, workers=cfg.workers):
        if frags is None:
            drops["unparsable"] += 1
        elif not frags:
            drops["no_fragment_in_range"] += 1
        pieces.extend(frags or ())
    # Exact-string duplicates go here (cheap); InChIKey dedupe after standardising.
    return list(dict.fromkeys(pieces)), drops


def main(*, params: Path = DEFAULT_PARAMS) -> dict:
    """Run the stage; returns the stats written to stats.json."""
    cfg: MoleculesConfig = load_section("molecules", params)
    start = time.perf_counter()
    source = open_source(cfg)
    log.info("reading up to %d records from %s", cfg.max_raw, source.describe())
    raw = list(tqdm(iter_smiles(cfg), total=cfg.max_raw, desc="read", unit="rec", mininterval=1.0))
    records_read = len(raw)
    raw, fragment_drops = candidates(raw, cfg)
    if cfg.fragments != "none":
        log.info("%s: %d records -> %d distinct fragments of %d-%d heavy atoms",
                 cfg.fragments, records_read, len(raw), cfg.min_heavy_atoms, cfg.max_heavy_atoms)
    df, dropped = build_table(raw, cfg)
    dropped.update(fragment_drops)  # whole records that gave no fragment, beside dropped fragments
    if df.empty:
        raise ValueError(
            f"no usable molecules from {source.describe()}: read {records_read} records, dropped "
            f"{dict(dropped) or 'none'}. Check molecules.source / path / smiles_column and the heavy-atom range."
        )
    counts = df["split"].value_counts()
    stats = {
        "source": source.describe(),
        "split_by": cfg.split_by,
        "test_fraction": cfg.test_fraction,
        "read": records_read,
        "fragments": cfg.fragments,
        "candidates": len(raw),
        "kept": len(df),
        "dropped": dict(sorted(dropped.items())),
        "train": int(counts.get("train", 0)),
        "test": int(counts.get("test", 0)),
        "heavy_atoms": {
            "min": int(df.heavy_atoms.min()),
            "mean": round(float(df.heavy_atoms.mean()), 2),
            "max": int(df.heavy_atoms.max()),
        },
        "seconds": round(time.perf_counter() - start, 2),
    }
    with atomic_dir(paths.MOLECULES) as out:
        df.to_parquet(out / "molecules.parquet", index=False)
        write_json(out / "stats.json", stats)
    log.info(
        "molecules: kept %d of %d (train %d, test %d), dropped %s in %.1fs",
        len(df), len(raw), stats["train"], stats["test"], stats["dropped"], stats["seconds"],
    )
    return stats
