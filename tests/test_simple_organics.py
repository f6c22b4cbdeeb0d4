"""Enumerated simple organics (molecules.simple_organics): valid, in range, reproducible, mixed in.

    python -m pytest -q tests/test_simple_organics.py
"""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from rdkit import Chem

from seqtune import paths
from seqtune.pipeline import molecules
from seqtune.pipeline.simple_organics import SKELETONS, SUBSTITUENTS, _attach, enumerate_simple_organics


def test_enumeration_is_valid_distinct_in_range_and_reproducible():
    mols = enumerate_simple_organics(400, 3, 10, seed=3)
    assert len(mols) == 400 and len(set(mols)) == 400
    parsed = [Chem.MolFromSmiles(s) for s in mols]
    assert all(m is not None for m in parsed)
    assert all(Chem.MolToSmiles(m) == s for m, s in zip(parsed, mols))  # canonical as written
    assert all(3 <= m.GetNumHeavyAtoms() <= 10 for m in parsed)
    assert enumerate_simple_organics(400, 3, 10, seed=3) == mols
    assert enumerate_simple_organics(400, 3, 10, seed=4) != mols


def test_enumeration_covers_the_functional_group_classes():
    """The point of the lever: the classes real small molecules have and fragments lack."""
    mols = [Chem.MolFromSmiles(s) for s in enumerate_simple_organics(3000, 3, 12)]
    classes = {
        "alcohol": "[CX4][OX2H]", "ether": "[CX4][OX2][CX4]", "carboxylic acid": "C(=O)[OX2H]",
        "ester": "C(=O)O[CX4]", "primary amine": "[CX4][NX3H2]", "amide": "C(=O)[NX3]", "nitrile": "C#N",
        "halide": "[CX4][F,Cl,Br,I]", "alkene": "[CX3]=[CX3]", "ketone": "[#6][CX3](=O)[#6]",
        "aldehyde": "[CX3H1](=O)", "nitro": "[N+](=O)[O-]", "heteroaromatic": "[n,o,s;a]",
        "benzene": "c1ccccc1", "acyclic alkane": "[CX4;!R][CX4;!R][CX4;!R]",
    }
    counts = Counter(name for m in mols for name, smarts in classes.items()
                     if m.HasSubstructMatch(Chem.MolFromSmarts(smarts)))
    missing = [c for c in classes if counts[c] < 20]
    assert not missing, f"classes with < 20 of 3000 molecules: {missing} ({dict(counts)})"


def test_attach_replaces_a_written_hydrogen_and_refuses_impossible_valences():
    pyrrole = Chem.MolFromSmiles("c1cc[nH]c1")
    n_idx = next(a.GetIdx() for a in pyrrole.GetAtoms() if a.GetSymbol() == "N")
    assert Chem.MolToSmiles(_attach(pyrrole, n_idx, Chem.MolFromSmiles("C"))) == "Cn1cccc1"
    # a carbonyl oxygen has no hydrogen to give up
    ketone = Chem.MolFromSmiles("CC(C)=O")
    o_idx = next(a.GetIdx() for a in ketone.GetAtoms() if a.GetSymbol() == "O")
    assert _attach(ketone, o_idx, Chem.MolFromSmiles("C")) is None


def test_every_skeleton_and_substituent_parses():
    assert all(Chem.MolFromSmiles(s) is not None for s in SKELETONS + SUBSTITUENTS)
    with pytest.raises(ValueError, match="unparsable"):
        enumerate_simple_organics(5, 3, 10, substituents=("C(",))


def test_a_narrow_range_stops_instead_of_looping():
    mols = enumerate_simple_organics(1000, 3, 3, max_tries_per_molecule=5)
    assert 0 < len(mols) < 1000 and all(Chem.MolFromSmiles(s).GetNumHeavyAtoms() == 3 for s in mols)


@pytest.mark.parametrize("split_level", ["parent", "fragment"])
def test_stage_mixes_them_in_beside_fragments(params_file, tmp_path, monkeypatch, split_level):
    monkeypatch.chdir(tmp_path)
    base = {"source": "rdkit-samples", "max_raw": 200, "fragments": "brics", "split_level": split_level,
            "val_fraction": 0.1, "max_heavy_atoms": 12, "workers": 1, "simple_organics": 0}
    molecules.main(params=params_file({"molecules": base}))
    without = pd.read_parquet(paths.MOLECULES / "molecules.parquet")
    molecules.main(params=params_file({"molecules": {**base, "simple_organics": 300}}))
    mixed = pd.read_parquet(paths.MOLECULES / "molecules.parquet")
    stats = json.loads((paths.MOLECULES / "stats.json").read_text())
    assert stats["simple_organics"] == 300
    extra = set(mixed.inchikey) - set(without.inchikey)
    assert 250 <= len(extra) <= 300  # a few enumerated molecules are fragments already
    # The fragments keep their sides (the enumerated molecules are their own parents), but for a
    # fragment that is also enumerated: like any fragment of a train parent, it may move to train.
    before = without.set_index("inchikey").split
    after = mixed.set_index("inchikey").split.loc[before.index]
    moved = before.index[before.values != after.values]
    enumerated = {Chem.MolToInchiKey(Chem.MolFromSmiles(s)) for s in enumerate_simple_organics(300, 3, 12)}
    assert set(moved) <= enumerated and (after.loc[moved] == "train").all()
    if split_level == "fragment":
        assert moved.empty  # a fragment-level split depends on nothing but the molecule's own key
    new = mixed[mixed.inchikey.isin(extra)]
    assert set(new.split) == {"train", "val", "test"}
    assert list(mixed.hash) == sorted(mixed.hash)
