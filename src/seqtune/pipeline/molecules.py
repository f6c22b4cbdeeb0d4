"""Stage `molecules`: read a molecule source, standardise, dedupe and split train/test.

    seqtune molecules            # or: dvc repro molecules

Writes `data/molecules/molecules.parquet` (smiles, inchikey, heavy_atoms, split, hash; rows
sorted by hash) and `data/molecules/stats.json` (records read, kept, dropped by reason).

The split is a pure function of a key: sha1 of the molecule's InChIKey (or of its Murcko
scaffold with `split_by: scaffold`) mapped to [0, 1): below `test_fraction` is test, the next
`val_fraction` is validation, the rest train. Adding molecules or asking for more training
data therefore never moves a molecule between splits, and downstream stages take prefixes in
hash order.

With `fragments: brics` and `split_level: parent` the key is the *source record's*: a record
goes to one split with all its fragments, and a fragment that several records give takes the
split of the first in train > val > test order. So no test fragment has a sibling, a
sub-fragment or its parent in training (a fragment-level split put them on both sides, and its
test split measured near-analogues).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, MoleculesConfig, load_section
from seqtune.files import atomic_dir, write_json
from seqtune.pipeline.molecule_sources import iter_smiles, open_source
from seqtune.pipeline.standardise import Standardised, split_hash, standardise, standardise_many  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

COLUMNS = ["smiles", "inchikey", "heavy_atoms", "split", "hash"]


def split_of(hash_hex: str, test_fraction: float, val_fraction: float = 0.0) -> str:
    """'test' when the hash falls in the first `test_fraction` of hash space, 'val' in the
    next `val_fraction`, else 'train'; depends on nothing but the hash, so a molecule's split
    never changes with data sizes (and the test share is the same with or without val)."""
    x = int(hash_hex[:15], 16) / 16**15
    return "test" if x < test_fraction else "val" if x < test_fraction + val_fraction else "train"


SPLIT_PRIORITY = ("train", "val", "test")
"""A fragment of parents in several splits goes to the first of these: it is never scored on
(val, test) when training saw it."""


@lru_cache(maxsize=1 << 16)
def _parent_key(parent: str, split_by: str) -> str:
    """What a parent-level split hashes: the parent's canonical SMILES, or its Murcko
    scaffold with `split_by: scaffold` (parents sharing a scaffold then share a side)."""
    if split_by != "scaffold":
        return parent
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(smiles=parent)


def parent_split(parents: Iterable[str], cfg: MoleculesConfig) -> str:
    """The split of a fragment from its parents' canonical SMILES (`split_level: parent`)."""
    splits = {split_of(split_hash(_parent_key(k, cfg.split_by)), cfg.test_fraction, cfg.val_fraction) for k in parents}
    return next(s for s in SPLIT_PRIORITY if s in splits)


def standardise_all(raw: list[str], cfg: MoleculesConfig) -> list[Standardised]:
    """Standardise in parallel over `cfg.workers` processes, order preserved."""
    return standardise_many(raw, cfg.min_heavy_atoms, cfg.max_heavy_atoms, want_scaffold=cfg.split_by == "scaffold",
                            workers=cfg.workers)


def by_parent(cfg: MoleculesConfig) -> bool:
    return cfg.fragments != "none" and cfg.split_level == "parent"


def build_table(raw: list[str], cfg: MoleculesConfig,
                parents: Mapping[str, Sequence[str]] | None = None) -> tuple[pd.DataFrame, Counter]:
    """The molecules table (deduped, split, sorted by hash) and the drop counts by reason.

    `parents` (from `candidates`, `split_level: parent`): each candidate's source-record keys;
    a molecule's split then follows every record that gave it (under any spelling)."""
    dropped: Counter = Counter()
    first: dict[str, tuple] = {}
    family: dict[str, set[str]] = {}
    for smi, st in zip(raw, standardise_all(raw, cfg)):
        if st.reason:
            dropped[st.reason] += 1
            continue
        if parents is not None:
            family.setdefault(st.inchikey, set()).update(parents.get(smi, ()))  # type: ignore[arg-type]
        if st.inchikey in first:  # first occurrence in file order wins: deterministic
            dropped["duplicate"] += 1
            continue
        h = split_hash(st.scaffold if cfg.split_by == "scaffold" else st.inchikey)  # type: ignore[arg-type]
        first[st.inchikey] = (st.smiles, st.inchikey, st.heavy_atoms, split_of(h, cfg.test_fraction, cfg.val_fraction), h)  # type: ignore[index]
    rows = list(first.values())
    if parents is not None:
        moved = Counter()
        for i, (smi, key, heavy, split, h) in enumerate(rows):
            new = parent_split(family[key], cfg) if family.get(key) else split
            if new != split:
                moved[f"{split}->{new}"] += 1
            rows[i] = (smi, key, heavy, new, h)
        log.info("parent split: %s fragments differ from a fragment-level split", dict(moved) or "no")
    df = pd.DataFrame(rows, columns=COLUMNS).astype({"heavy_atoms": "int64"})
    # InChIKey breaks ties (scaffold splits share a hash): the order is total and stable.
    df = df.sort_values(["hash", "inchikey"], kind="stable").reset_index(drop=True)
    return df, dropped


def candidates(raw: list[str], cfg: MoleculesConfig) -> tuple[list[str], Counter, dict[str, list[str]] | None]:
    """The SMILES to standardise from the records read: the records themselves, or (with
    `fragments: brics`) their distinct fragments in range, and the records that gave none or
    were longer than `max_record_chars`, counted by reason; with `split_level: parent`, each
    fragment's source records (canonical SMILES, their split key), else None. Shared with the
    token sampler so a sweep's cost counts what runs."""
    drops: Counter = Counter()
    fits = [r for r in raw if len(r) <= cfg.max_record_chars]
    if len(fits) < len(raw):  # before RDKit sees them: parsing one 10 MB line took minutes
        drops["record_too_long"] = len(raw) - len(fits)
        raw = fits
    extra = _simple_organics(cfg)
    if cfg.fragments == "none":
        return list(dict.fromkeys(raw + extra)), drops, None
    from seqtune.pipeline.fragments import fragment_all

    parents: dict[str, list[str]] = {}
    for family in fragment_all(raw, cfg.min_heavy_atoms, cfg.max_heavy_atoms, workers=cfg.workers):
        if family is None:
            drops["unparsable"] += 1
            continue
        parent, frags = family
        if not frags:
            drops["no_fragment_in_range"] += 1
        for f in frags:
            parents.setdefault(f, []).append(parent)
    for smi in extra:  # whole molecules: each is its own parent (after the fragments, which win a tie)
        parents.setdefault(smi, []).append(smi)
    # Exact-string duplicates go here (cheap; dicts keep first-seen order); InChIKey dedupe after standardising.
    return list(parents), drops, (parents if by_parent(cfg) else None)


def _simple_organics(cfg: MoleculesConfig) -> list[str]:
    """`cfg.simple_organics` enumerated whole molecules in the size range (none when 0)."""
    if not cfg.simple_organics:
        return []
    from seqtune.pipeline.simple_organics import enumerate_simple_organics

    mols = enumerate_simple_organics(cfg.simple_organics, cfg.min_heavy_atoms, cfg.max_heavy_atoms,
                                     seed=cfg.simple_organics_seed)
    log.info("simple organics: %d enumerated molecules of %d-%d heavy atoms added", len(mols),
             cfg.min_heavy_atoms, cfg.max_heavy_atoms)
    return mols


def main(*, params: Path = DEFAULT_PARAMS) -> dict:
    """Run the stage; returns the stats written to stats.json."""
    cfg: MoleculesConfig = load_section("molecules", params)
    start = time.perf_counter()
    source = open_source(cfg)
    log.info("reading up to %d records from %s", cfg.max_raw, source.describe())
    raw = list(tqdm(iter_smiles(cfg), total=cfg.max_raw, desc="read", unit="rec", mininterval=1.0))
    records_read = len(raw)
    raw, fragment_drops, parents = candidates(raw, cfg)
    if cfg.fragments != "none":
        log.info("%s: %d records -> %d distinct fragments of %d-%d heavy atoms",
                 cfg.fragments, records_read, len(raw), cfg.min_heavy_atoms, cfg.max_heavy_atoms)
    df, dropped = build_table(raw, cfg, parents)
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
        "split_level": "parent" if by_parent(cfg) else "molecule",
        "test_fraction": cfg.test_fraction,
        "val_fraction": cfg.val_fraction,
        "read": records_read,
        "fragments": cfg.fragments,
        "simple_organics": cfg.simple_organics,
        "candidates": len(raw),
        "kept": len(df),
        "dropped": dict(sorted(dropped.items())),
        "train": int(counts.get("train", 0)),
        "val": int(counts.get("val", 0)),
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
        "molecules: kept %d of %d (train %d, val %d, test %d), dropped %s in %.1fs",
        len(df), len(raw), stats["train"], stats["val"], stats["test"], stats["dropped"], stats["seconds"],
    )
    return stats
