"""Small molecules from large ones: BRICS fragments of each record, dummy atoms capped with H.

    python -c "from seqtune.pipeline.fragments import brics_fragments; print(brics_fragments('CC(=O)Nc1ccc(OCC)cc1', 3, 15))"

Used by the molecules stage when `molecules.fragments: brics`. Why: a small model learns
names fastest on short examples, but the shipped corpora hold few small molecules (MOSES is
filtered to drug-like sizes: 62 of its first 5,000 have <= 15 heavy atoms). Breaking each
molecule at its BRICS bonds (RDKit's retrosynthetic rules; `keepNonLeafNodes` keeps the
intermediate pieces too) and capping the open valences with hydrogen gives real-looking
building blocks: measured, the first 5,000 MOSES molecules yield 8,892 distinct fragments of
3-15 heavy atoms. Fragments are then standardised, deduped and split like any other record,
so a test fragment's InChIKey never occurs in training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm

_DUMMY = None
_HYDROGEN = None


def brics_fragments(smiles: str, min_heavy: int, max_heavy: int) -> list[str] | None:
    """Distinct capped BRICS fragments of `smiles` with a heavy-atom count in range, plus the
    molecule itself when it is in range; [] when none is in range, None for a record RDKit
    cannot parse (so the stage can count why records gave nothing). Never raises."""
    global _DUMMY, _HYDROGEN
    from rdkit import Chem
    from rdkit.Chem import BRICS

    if _DUMMY is None:
        _DUMMY, _HYDROGEN = Chem.MolFromSmarts("[#0]"), Chem.MolFromSmiles("[H]")
    try:
        mol = Chem.MolFromSmiles(smiles) if smiles else None
        if mol is None:
            return None
        out = []
        if min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
            out.append(Chem.MolToSmiles(mol))
        for piece in sorted(BRICS.BRICSDecompose(mol, keepNonLeafNodes=True)):
            frag = Chem.MolFromSmiles(piece)
            if frag is None:
                continue
            frag = Chem.RemoveHs(Chem.ReplaceSubstructs(frag, _DUMMY, _HYDROGEN, replaceAll=True)[0])
            if min_heavy <= frag.GetNumHeavyAtoms() <= max_heavy:
                out.append(Chem.MolToSmiles(frag))
        return list(dict.fromkeys(out))
    except Exception:  # RDKit raises on a few exotic valences: as good as unparsable
        return None


def _args(a: tuple[str, int, int]) -> tuple[str, list[str]] | None:
    frags = brics_fragments(*a)
    if frags is None:
        return None
    from rdkit import Chem

    # The record's own canonical SMILES: the key a parent-level split hashes (two spellings
    # of one record are one parent).
    return Chem.MolToSmiles(Chem.MolFromSmiles(a[0])), frags


def fragment_all(raw: Iterable[str], min_heavy: int, max_heavy: int, *,
                 workers: int = 1) -> Iterator[tuple[str, list[str]] | None]:
    """Every record as (its canonical SMILES, its fragments), or None when unparsable, in
    record order; duplicates across records are left to the molecules stage's dedupe, which
    keeps the first."""
    args = [(r, min_heavy, max_heavy) for r in raw]
    bar = dict(total=len(args), desc="fragment", unit="mol", mininterval=1.0)
    if workers == 1 or len(args) < 1000:
        results = map(_args, args)
        yield from tqdm(results, **bar)
        return
    with ProcessPoolExecutor(workers) as ex:
        yield from tqdm(ex.map(_args, args, chunksize=128), **bar)
