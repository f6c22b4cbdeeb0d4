"""Stage `data@<task>`: prefix-stable train sets, a fixed test set, formats, the label cache,
determinism and bad input — with real labelling (openclatura + OPSIN).

    .venv/bin/python -m pytest -q tests/test_data.py
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from seqtune import paths
from seqtune.chem import canonical_smiles, opsin_to_smiles
from seqtune.pipeline import data, molecules
from seqtune.inference.formats import render_prompt
from seqtune.tasks import get_task

COLUMNS = ["source", "target", "smiles", "inchikey", "heavy_atoms", "prompt", "completion"]


@pytest.fixture(scope="module")
def molecules_dir(tmp_path_factory) -> Path:
    """data/molecules from 400 rdkit-samples records, built once for the module."""
    import yaml

    root = tmp_path_factory.mktemp("mols")
    params = root / "params.yaml"
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["molecules"].update(source="rdkit-samples", max_raw=400, workers=1)
    params.write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        molecules.main(params=params)
    return root / paths.MOLECULES


@pytest.fixture
def workdir(tmp_path, monkeypatch, molecules_dir) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(molecules_dir, paths.MOLECULES)
    return tmp_path


def build(task, params_file, **data_overrides):
    stats = data.main(task, params=params_file({"data": {"workers": 1, **data_overrides}}))
    out = paths.dataset_dir(task)
    train, test = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")
    assert json.loads((out / "stats.json").read_text()) == json.loads(json.dumps(stats))
    return train, test, stats


def test_growing_n_train_adds_a_prefix_and_keeps_the_test_set(workdir, params_file):
    train20, test20, s20 = build("smiles2iupac", params_file, n_train=20, n_test=10)
    train60, test60, s60 = build("smiles2iupac", params_file, n_train=60, n_test=10)
    assert len(train20) == 20 and len(train60) == 60 and len(test20) == 10
    pd.testing.assert_frame_equal(train60.head(20), train20)  # n_train=20 is a prefix of 60
    pd.testing.assert_frame_equal(test60, test20)  # same test set for every n_train
    assert s20["test_hash"] == s60["test_hash"] and s20["data_hash"] != s60["data_hash"]
    assert not set(train60.inchikey) & set(test60.inchikey)
    # Order is the molecules' hash order and splits are the molecules stage's.
    mols = pd.read_parquet(paths.MOLECULES / "molecules.parquet").set_index("inchikey")
    assert (mols.loc[train60.inchikey, "split"] == "train").all() and (mols.loc[test60.inchikey, "split"] == "test").all()
    hashes = list(mols.loc[train60.inchikey, "hash"])
    assert hashes == sorted(hashes)
    assert s60["labelled"] < 60  # the first 20+10 came from the label cache


def test_smiles2iupac_dataset_targets_round_trip_and_stats(workdir, params_file):
    train, test, stats = build("smiles2iupac", params_file, n_train=25, n_test=10, format="instruction")
    assert list(train.columns) == COLUMNS and train.heavy_atoms.dtype == "int64"
    rows = pd.concat([train, test])
    back = opsin_to_smiles(list(rows.target))  # real OPSIN, independent of the stage's check
    assert [canonical_smiles(b) for b in back] == list(rows.smiles)
    assert (rows.source == rows.smiles).all()
    assert stats["format"] == "instruction" and stats["train"] == 25 and stats["test"] == 10
    assert stats["target_chars"]["max"] == rows.target.str.len().max()
    assert stats["pairs_per_s"] > 0 and len(stats["data_hash"]) == len(stats["test_hash"]) == 64


def test_same_params_same_hashes_with_or_without_cache(workdir, params_file):
    _, _, first = build("smiles2iupac", params_file, n_train=15, n_test=8)
    _, _, again = build("smiles2iupac", params_file, n_train=15, n_test=8)
    assert again["labelled"] == 0  # all from the cache
    shutil.rmtree(paths.LABEL_CACHE)
    uncached = data.main("smiles2iupac", params=params_file({"data": {"n_train": 15, "n_test": 8, "workers": 2}}), use_cache=False)
    for s in (again, uncached):
        assert (s["data_hash"], s["test_hash"]) == (first["data_hash"], first["test_hash"])


def test_iupac2smiles_reverses_the_verified_pairs_and_reuses_their_labels(workdir, params_file):
    fwd, fwd_test, _ = build("smiles2iupac", params_file, n_train=12, n_test=6)
    rev, rev_test, stats = build("iupac2smiles", params_file, n_train=12, n_test=6, format="instruction")
    assert stats["labelled"] == 0  # labels come from smiles2iupac's cache entries
    assert list(rev.source) == list(fwd.target) and list(rev.target) == list(fwd.source)
    assert list(rev_test.source) == list(fwd_test.target)
    assert "SMILES of the molecule" in rev.prompt[0] and rev.source[0] in rev.prompt[0]


def test_smiles2formula_and_fewer_than_asked(workdir, params_file, caplog):
    with caplog.at_level(logging.WARNING, logger="seqtune.pipeline.data"):
        train, test, stats = build("smiles2formula", params_file, n_train=10, n_test=100_000)
    assert len(train) == 10 and 0 < len(test) < 100_000 and stats["test"] == len(test)
    assert f"only {len(test)} test examples available (asked for 100000)" in caplog.text
    task = get_task("smiles2formula")
    assert list(train.target) == task.baseline(list(train.source))


@pytest.mark.parametrize("fmt", ["plain", "instruction", "chat", "atoms"])
def test_formats(workdir, params_file, tiny_model_dir, fmt):
    shutil.copytree(tiny_model_dir, paths.BASE_MODEL)
    train, _, stats = build("smiles2formula", params_file, n_train=5, n_test=3, format=fmt)
    assert stats["format"] == fmt
    src, tgt, prompt, comp = train.source[0], train.target[0], train.prompt[0], train.completion[0]
    if fmt == "atoms":
        # Every SMILES token on its own; the formula target stays as it is.
        assert prompt.replace(" ", "") == f"{src}=>" and comp == f" {tgt}"
        assert all(t.rstrip("0123456789") in {"Cl", "Br", "", *"BCNOSPFIbcnosp()=#-+/\\"} or t.startswith("[")
                   for t in prompt[:-3].split()), prompt
        return
    assert src in prompt and tgt not in prompt
    if fmt == "plain":
        assert prompt == f"{src} =>" and comp == f" {tgt}"
    else:
        assert comp == tgt
    if fmt == "instruction":
        assert get_task("smiles2formula").instruction in prompt and prompt.endswith("### Response:\n")
    if fmt == "chat":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(paths.BASE_MODEL)
        msgs = [{"role": "user", "content": f"{get_task('smiles2formula').instruction}\n{src}"}]
        assert prompt == tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


@pytest.mark.parametrize(
    "smiles",
    ["CCO", "c1ccccc1Cl", "Br/C=C/[C@@H](N)C(=O)[O-]", "C%12CCCCC%12", "[2H]C([2H])([2H])[N+](C)(C)C", "OB(O)c1ccsc1"],
)
def test_atoms_format_round_trips_smiles(smiles):
    """iupac2smiles in the atoms format: the spaced SMILES the model writes reads back exactly."""
    from seqtune.inference.formats import parse_completion, render_completion, smiles_tokens

    task = get_task("iupac2smiles")
    assert "".join(smiles_tokens(smiles)) == smiles
    comp = render_completion("atoms", task, smiles)
    ring_digits = sum(t.isdigit() or t.startswith("%") for t in smiles_tokens(smiles))
    assert comp.count(" ") == len(smiles_tokens(smiles)) - ring_digits and parse_completion("atoms", task, comp) == smiles
    assert render_completion("atoms", task, "c1ccccc1") == " c1 c c c c c1"
    assert "[C@@H]" in smiles_tokens("N[C@@H](C)C=O") and "Cl" in smiles_tokens("CCl")
    # A name input is left as it is; only SMILES are split.
    assert render_prompt("atoms", task, "2-chloropropane") == "2-chloropropane =>"


def test_format_changes_data_hash_not_test_hash(workdir, params_file):
    _, _, plain = build("smiles2formula", params_file, n_train=5, n_test=3, format="plain")
    _, _, instr = build("smiles2formula", params_file, n_train=5, n_test=3, format="instruction")
    assert plain["data_hash"] != instr["data_hash"] and plain["test_hash"] == instr["test_hash"]


def test_bad_inputs_are_clear_errors(workdir, params_file):
    with pytest.raises(FileNotFoundError, match="seqtune base-model"):
        build("smiles2formula", params_file, n_train=5, n_test=3, format="chat")
    mols = pd.read_parquet(paths.MOLECULES / "molecules.parquet")
    mols[mols.split == "train"].to_parquet(paths.MOLECULES / "molecules.parquet")
    with pytest.raises(ValueError, match="no test examples"):
        build("smiles2formula", params_file, n_train=5, n_test=3)
    shutil.rmtree(paths.MOLECULES)
    with pytest.raises(FileNotFoundError, match="seqtune molecules"):
        build("smiles2formula", params_file, n_train=5, n_test=3)
    assert not paths.dataset_dir("smiles2formula").exists()


def test_size_balanced_sample_gives_every_size_its_share_and_keeps_the_test_set(workdir, params_file):
    """`data.sample: size_balanced` deals train molecules round-robin over heavy-atom counts;
    a larger n_train still only adds, and the test set is the hash-order one."""
    _, test_hash, s_hash = build("smiles2formula", params_file, n_train=40, n_test=10)
    small, test_small, s_small = build("smiles2formula", params_file, n_train=20, n_test=10, sample="size_balanced")
    train, test, stats = build("smiles2formula", params_file, n_train=40, n_test=10, sample="size_balanced")
    pd.testing.assert_frame_equal(test, test_hash)  # the test set is never resampled
    assert stats["test_hash"] == s_hash["test_hash"] and stats["sample"] == "size_balanced"
    pd.testing.assert_frame_equal(train.head(20), small)  # growing n_train adds
    # Every size that has molecules left gets the same count (to one molecule), which
    # hash order does not do for this source.
    mols = pd.read_parquet(paths.MOLECULES / "molecules.parquet")
    available = mols[mols.split == "train"].heavy_atoms.value_counts()
    counts = train.heavy_atoms.value_counts()
    level = counts.max()
    assert all(counts.get(size, 0) >= min(n, level - 1) for size, n in available.items())
    assert stats["train_heavy_atoms"] == {str(k): int(v) for k, v in sorted(counts.items())}
    hash_counts = pd.Series(s_hash["train_heavy_atoms"])
    assert len(counts) > len(hash_counts) or counts.max() < hash_counts.max()


def test_smiles_variants_spell_the_same_molecule_with_the_same_label(workdir, params_file):
    """`data.smiles_variants: 3`: each train molecule gives its canonical example then two
    randomized SMILES of the same structure with the same formula; the test set and the
    canonical rows are the 1-variant ones; iupac2smiles (a name as input) is unchanged."""
    base, test1, s1 = build("smiles2formula", params_file, n_train=15, n_test=8)
    train, test, stats = build("smiles2formula", params_file, n_train=15, n_test=8, smiles_variants=3)
    assert len(train) == 45 and stats["train"] == 45 and stats["train_molecules"] == 15 and stats["smiles_variants"] == 3
    pd.testing.assert_frame_equal(test, test1)
    assert stats["test_hash"] == s1["test_hash"] and stats["data_hash"] != s1["data_hash"]
    pd.testing.assert_frame_equal(train.iloc[::3].reset_index(drop=True), base)  # canonical rows first, unchanged
    task = get_task("smiles2formula")
    for _, group in train.groupby("inchikey", sort=False):
        assert len(group) == 3 and group.target.nunique() == 1
        assert {canonical_smiles(s) for s in group.source} == {group.smiles.iloc[0]}  # same molecule
        assert task.baseline(list(group.source)) == list(group.target)  # RDKit's formula of each spelling
        assert all(p.startswith(s) for p, s in zip(group.prompt, group.source))
    spelled = train.iloc[1::3]
    assert (spelled.source != spelled.smiles).mean() > 0.9  # really other spellings, not copies
    # Deterministic: the same spellings again (seeded by InChIKey, not by a global RNG).
    again, _, s_again = build("smiles2formula", params_file, n_train=15, n_test=8, smiles_variants=3)
    assert s_again["data_hash"] == stats["data_hash"]
    rev, _, rs = build("iupac2smiles", params_file, n_train=15, n_test=8, smiles_variants=3)
    assert len(rev) == 15 and rs["smiles_variants"] == 1


def test_random_smiles_keeps_the_count_for_molecules_with_few_spellings():
    from seqtune.chem import random_smiles

    few = random_smiles("O=C=O", 5, seed=1)  # carbon dioxide has only a couple of spellings
    assert len(few) == 5 and {canonical_smiles(s) for s in few} == {"O=C=O"}
    many = random_smiles("CC(=O)Oc1ccccc1C(=O)O", 4, seed=1)
    assert len(set(many)) == 4 and "CC(=O)Oc1ccccc1C(=O)O" not in many
    assert many == random_smiles("CC(=O)Oc1ccccc1C(=O)O", 4, seed=1) != random_smiles("CC(=O)Oc1ccccc1C(=O)O", 4, seed=2)
    with pytest.raises(ValueError, match="not a SMILES"):
        random_smiles("C1CC", 2, seed=0)
    with pytest.raises(ValueError, match="seed"):
        random_smiles("CCO", 2, seed=2**31)  # RDKit would silently draw unseeded
