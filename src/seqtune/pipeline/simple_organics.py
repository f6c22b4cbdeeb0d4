"""Enumerated simple organic molecules: whole molecules of the functional-group classes a chemist names.

    python -c "from seqtune.pipeline.simple_organics import enumerate_simple_organics as e; print(e(20, 3, 12))"

Why: BRICS fragments of drug-like ZINC molecules are H-capped ring pieces. A model trained only
on them named 2% of real molecules of 3-12 heavy atoms right (solvents, reagents, acids, esters,
halides; run abc99508), so the molecules stage can mix in (`molecules.simple_organics`) whole
molecules built here: a skeleton (chains, alkenes, cycloalkanes, aromatics, heteroaromatics,
saturated heterocycles, lactones/lactams) with 0-3 substituents (alkyl, hydroxy, alkoxy, acids,
esters, amines, amides, halogens, nitrile, carbonyls, nitro, thiols, sulfonamides, silyl...) at
atoms that carry a hydrogen. Generation is seeded, so the same settings give the same molecules;
RDKit sanitises every one and rejects impossible valences. No stereo: names then need no
R/S or E/Z descriptors the labeller may not give.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

SKELETONS: tuple[str, ...] = (
    # chains and unsaturated chains (branches come from alkyl substituents)
    "C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC", "CCCCCCC", "CCCCCCCC", "CCCCCCCCC",
    "C=C", "CC=C", "CC=CC", "C=CC=C", "C#C", "CC#C", "CC#CC",
    # carbocycles
    "C1CC1", "C1CCC1", "C1CCCC1", "C1CCCCC1", "C1CCCCCC1", "C1=CCCC1", "C1=CCCCC1",
    "c1ccccc1", "c1ccc2ccccc2c1", "C1CCC2CCCCC2C1",
    # heteroaromatics
    "c1ccncc1", "c1cncnc1", "c1cnccn1", "c1ccnnc1", "c1ccoc1", "c1ccsc1", "c1cc[nH]c1",
    "c1c[nH]cn1", "c1cn[nH]c1", "c1cocn1", "c1cscn1", "c1conc1", "c1nnc[nH]1",
    "c1ccc2[nH]ccc2c1", "c1ccc2ncccc2c1", "c1ccc2occc2c1", "c1ccc2[nH]cnc2c1",
    # saturated heterocycles, lactones, lactams, cyclic ketones
    "C1CCOC1", "C1CCOCC1", "C1CCNC1", "C1CCNCC1", "C1COCCN1", "C1CNCCN1", "C1CCSC1", "C1COCCO1",
    "C1CO1", "C1CN1", "O=C1CCCC1", "O=C1CCCCC1", "O=C1CCCO1", "O=C1CCCN1", "O=C1CCCCN1",
)
"""What substituents go on. Written so RDKit parses each as is."""

SUBSTITUENTS: tuple[str, ...] = (
    # alkyl (the commonest, so listed with weight)
    "C", "C", "C", "CC", "CC", "CCC", "C(C)C", "C(C)(C)C", "CCCC", "CC(C)C", "C=C", "CC=C", "C#C",
    # O, N, S groups; atom 0 is the one that bonds to the skeleton
    "O", "O", "OC", "OCC", "OC(C)C", "OC(C)=O", "OC=O", "C(=O)O", "C(=O)O", "C(=O)OC", "C(=O)OCC",
    "C=O", "C(C)=O", "C(=O)CC", "C(=O)Cl", "C(N)=O", "C(=O)NC", "C(=O)N(C)C", "NC(C)=O", "NC=O",
    "N", "N", "NC", "N(C)C", "NCC", "NC(N)=O", "N=C=O", "N=C=S", "NN", "C#N", "C#N", "SC#N",
    "[N+](=O)[O-]", "N=O", "S", "SC", "S(C)(=O)=O", "S(N)(=O)=O", "S(=O)(=O)O", "OS(C)(=O)=O",
    "OP(=O)(OC)OC", "P(C)(C)=O",
    # halogens and halogenated groups
    "F", "Cl", "Cl", "Br", "Br", "I", "C(F)(F)F", "OC(F)(F)F", "CCl", "CBr", "C(Cl)(Cl)Cl",
    # silyl, aryl and rings as substituents
    "[Si](C)(C)C", "O[Si](C)(C)C", "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "C1CC1", "C1CCCCC1",
    "c1ccncc1", "N1CCCCC1", "N1CCOCC1",
)
N_SUBSTITUENTS: tuple[int, ...] = (0, 1, 1, 1, 2, 2, 2, 3)
"""How many substituents a molecule gets, drawn uniformly from this list (mostly 1-2)."""


def _attach(mol, atom_idx: int, sub):
    """`mol` with `sub`'s atom 0 bonded to `mol`'s atom `atom_idx` (a single bond that
    replaces one hydrogen), or None when RDKit rejects the result."""
    from rdkit import Chem

    combo = Chem.RWMol(Chem.CombineMols(mol, sub))
    offset = mol.GetNumAtoms()
    site = combo.GetAtomWithIdx(atom_idx)
    if site.GetNumExplicitHs():  # [nH], [SiH]...: the new bond replaces the written H
        site.SetNumExplicitHs(site.GetNumExplicitHs() - 1)
    # A bracketed attachment atom ([N+](=O)[O-], [Si](C)(C)C) is written one bond short: the
    # parser reads that open valence as a radical, which the new bond fills.
    combo.GetAtomWithIdx(offset).SetNumRadicalElectrons(0)
    combo.AddBond(atom_idx, offset, Chem.BondType.SINGLE)
    try:
        out = combo.GetMol()
        Chem.SanitizeMol(out)
    except Exception:  # noqa: BLE001 - RDKit raises several kinds for impossible valences
        return None
    return out


def enumerate_simple_organics(n: int, min_heavy_atoms: int, max_heavy_atoms: int, *, seed: int = 0,
                              skeletons: Sequence[str] = SKELETONS, substituents: Sequence[str] = SUBSTITUENTS,
                              max_tries_per_molecule: int = 20) -> list[str]:
    """At most `n` distinct canonical SMILES of `min_heavy_atoms`-`max_heavy_atoms` heavy atoms,
    in generation order (a pure function of the arguments). Stops early when `n` distinct
    molecules take more than `n * max_tries_per_molecule` draws (a narrow size range)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    rng = random.Random(seed)
    skels = [Chem.MolFromSmiles(s) for s in skeletons]
    subs = [Chem.MolFromSmiles(s) for s in substituents]
    if any(m is None for m in skels + subs):
        bad = [s for s, m in zip(list(skeletons) + list(substituents), skels + subs) if m is None]
        raise ValueError(f"unparsable skeleton or substituent SMILES: {bad}")
    out: dict[str, None] = {}
    for _ in range(n * max_tries_per_molecule):
        if len(out) >= n:
            break
        mol = rng.choice(skels)
        for _ in range(rng.choice(N_SUBSTITUENTS)):
            sites = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs() > 0]
            if not sites:
                break
            mol = _attach(mol, rng.choice(sites), rng.choice(subs)) or mol
        if min_heavy_atoms <= mol.GetNumHeavyAtoms() <= max_heavy_atoms:
            out.setdefault(Chem.MolToSmiles(mol), None)
    return list(out)
