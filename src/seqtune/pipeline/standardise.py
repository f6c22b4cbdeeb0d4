"""RDKit standardisation of one raw SMILES, shared by the stages that read molecules.

    python -c "from seqtune.pipeline.standardise import standardise; print(standardise('CC(=O)[O-].[Na+]'))"

The molecules stage (training and test molecules) and the real_molecules stage (molecules
scored by band) must standardise identically: otherwise a real molecule's InChIKey could
differ from the same molecule's in training, and removing training molecules would miss it.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

from tqdm.auto import tqdm


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


def _standardise_args(args: tuple[str, int, int, bool]) -> Standardised:
    return standardise(*args)


def standardise_many(raw: list[str], min_heavy: int, max_heavy: int, *, want_scaffold: bool = False,
                     workers: int = 1) -> list[Standardised]:
    """`standardise` over `workers` processes, order preserved (one process below 1,000)."""
    args = [(r, min_heavy, max_heavy, want_scaffold) for r in raw]
    bar = dict(total=len(args), desc="standardise", unit="mol", mininterval=1.0)
    if workers == 1 or len(args) < 1000:
        return [_standardise_args(a) for a in tqdm(args, **bar)]
    with ProcessPoolExecutor(workers) as ex:
        return list(tqdm(ex.map(_standardise_args, args, chunksize=256), **bar))
