"""Stage `real_molecules`: real molecules by band, none from the train split; the data stage
labels them and the evaluation scores them by band.

    .venv/bin/python -m pytest -q tests/test_real_molecules.py
"""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import pytest

from seqtune import paths
from seqtune.pipeline import real_molecules
from seqtune.pipeline.molecule_sources import CHEDL_MEMBERS, read_chedl
from seqtune.pipeline.standardise import split_hash, standardise

REAL = ["CCOCC", "CC(C)=O", "ClCCl", "CCCCO", "c1ccncc1", "CC(=O)OCC", "OCCO", "CCN(CC)CC",
        "CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
        "CN1CCC23c4c5ccc(O)c4OC2C(O)C=CC3C1C5", "[Na+].[Cl-]", "not a smiles", "CC(=O)Oc1ccccc1C(=O)O"]


def _train_split(tmp_path, train: list[str], test: list[str]) -> None:
    """A molecules-stage table: `train` in the train split, `test` in the test split."""
    rows = [(s, standardise(s).inchikey, 0, split, "") for split, mols in (("train", train), ("test", test)) for s in mols]
    (tmp_path / paths.MOLECULES).mkdir(parents=True)
    pd.DataFrame(rows, columns=["smiles", "inchikey", "heavy_atoms", "split", "hash"]).to_parquet(
        tmp_path / paths.MOLECULES / "molecules.parquet")


def _run(params_file, tmp_path, monkeypatch, **overrides):
    monkeypatch.chdir(tmp_path)
    real = tmp_path / "real.smi"
    real.write_text("\n".join(REAL) + "\n")
    params = params_file({"real_molecules": {"source": "file", "path": str(real), "workers": 1, **overrides}})
    stats = real_molecules.main(params=params)
    return pd.read_parquet(paths.REAL_MOLECULES / "molecules.parquet"), stats, params


def test_bands_are_half_open_and_cover_the_edges():
    edges = [3, 13, 16]
    assert [real_molecules.band_label(h, edges) for h in (2, 3, 12, 13, 15, 16)] == [None, "3-12", "3-12", "13-15", "13-15", None]
    assert real_molecules.band_labels(edges) == ["3-12", "13-15"]


def test_training_molecules_are_removed_and_bands_capped(params_file, tmp_path, monkeypatch):
    # Diethyl ether (written another way) and paracetamol are in training; pyridine only in test.
    _train_split(tmp_path, train=["O(CC)CC", "CC(=O)Nc1ccc(O)cc1"], test=["c1ccncc1"])
    df, stats, _ = _run(params_file, tmp_path, monkeypatch, band_edges=[3, 9, 16, 31], per_band=3)
    keys = set(df.inchikey)
    assert standardise("CCOCC").inchikey not in keys and standardise("CC(=O)Nc1ccc(O)cc1").inchikey not in keys
    assert stats["dropped"]["in_training"] == 2
    assert standardise("c1ccncc1").inchikey in keys or stats["kept"]["3-8"] == 3  # test molecules may stay
    assert stats["kept"] == {b: int((df.band == b).sum()) for b in ("3-8", "9-15", "16-30")}
    assert max(stats["kept"].values()) <= 3 and stats["kept"]["3-8"] == 3  # 8 small ones compete for 3 places
    for _, r in df.iterrows():  # each row in its band, hashed by its own InChIKey
        lo, hi = map(int, r.band.split("-"))
        assert lo <= r.heavy_atoms <= hi and r.hash == split_hash(r.inchikey)
    # The band holds the first eligible molecules in hash order of the file's rows, whatever the file order.
    trained = {standardise(s).inchikey for s in ("CCOCC", "CC(=O)Nc1ccc(O)cc1")}
    eligible = [s for s in sorted(REAL, key=split_hash)
                if (st := standardise(s, 3, 30)).reason is None and st.heavy_atoms <= 8 and st.inchikey not in trained]
    assert len(eligible) > 3 and eligible[:3] != [s for s in REAL if s in eligible][:3]  # the orders differ
    assert list(df[df.band == "3-8"].inchikey) == [standardise(s).inchikey for s in eligible[:3]]
    assert stats["dropped"]["unparsable"] == 1 and stats["source"].startswith("file")


def _model_folder(model_src, task: str, fmt: str) -> None:
    """A "fine-tuned" model as the train stage leaves it: weights, card, its MLflow run."""
    import shutil

    from seqtune.tracking import setup_mlflow

    with setup_mlflow(None, "seqtune").start_run(run_name=f"train-{task}") as run:
        pass
    model = paths.model_dir(task)
    shutil.copytree(model_src, model)
    (model / "seqtune.json").write_text(json.dumps({"task": task, "format": fmt, "base_model": "tiny", "method": "full"}))
    (model / "run_id").write_text(run.info.run_id)


def test_data_labels_them_and_evaluation_scores_them_by_band(params_file, tmp_path, monkeypatch, lively_model_dir):
    from seqtune.pipeline import data, evaluate

    _train_split(tmp_path, train=["CCOCC"], test=["c1ccncc1"])
    _, _, params = _run(params_file, tmp_path, monkeypatch, band_edges=[3, 9, 31], per_band=4)
    # The real stage's table feeds the data stage; a molecules table with both splits too.
    mols = pd.read_parquet(paths.MOLECULES / "molecules.parquet")
    mols["heavy_atoms"] = [5, 6]
    mols["hash"] = mols.inchikey.map(split_hash)
    mols.to_parquet(paths.MOLECULES / "molecules.parquet")
    import yaml

    raw = yaml.safe_load(params.read_text())
    raw["data"].update({"n_train": 1, "n_test": 1, "n_val": 1, "workers": 1})
    raw["evaluate"].update({"n_eval": 1, "n_real_per_band": 3, "zero_shot_baseline": False, "max_new_tokens": 4,
                            "decoding": "greedy"})
    params.write_text(yaml.safe_dump(raw))
    stats = data.main("smiles2formula", params=params, use_cache=False)
    real = pd.read_parquet(paths.dataset_dir("smiles2formula") / "real.parquet")
    assert stats["real"] == {"3-8": 4, "9-30": 4} and len(real) == 8 and set(real.band) == {"3-8", "9-30"}
    assert stats["val"] == 0 and stats["real_hash"]  # no val split in this table: an empty val set
    _model_folder(lively_model_dir, "smiles2formula", stats["format"])
    metrics = evaluate.main("smiles2formula", params=params)
    assert list(metrics["real"]) == ["3-8", "9-30"]
    assert all(metrics["real"][b]["n"] == 3 for b in metrics["real"])
    assert 0.0 <= metrics["real"]["3-8"]["exact_match"] <= 1.0 and metrics["real_hash"]
    lines = [json.loads(x) for x in paths.real_predictions_path("smiles2formula").read_text().splitlines()]
    assert len(lines) == 6 and {x["band"] for x in lines} == {"3-8", "9-30"}
    assert json.loads((paths.plots_dir("smiles2formula") / "real_by_band.json").read_text())[0]["band"] == "3-8"
    assert (paths.plots_dir("smiles2formula") / "png" / "real_by_band.png").stat().st_size > 0


def test_chedl_tables_are_read_in_file_order(tmp_path):
    wheel = tmp_path / "chemicals-1.5.2-py3-none-any.whl"
    row = "{cid}\t64-17-5\tC2H6O\t46.07\t{smi}\tInChI=x\t{key}\tethanol\tethyl alcohol\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(CHEDL_MEMBERS[0], row.format(cid=1, smi="CCO", key="LFQSCWFLJHTTHZ-UHFFFAOYSA-N"))
        zf.writestr(CHEDL_MEMBERS[1], row.format(cid=2, smi="CC(C)=O", key="CSCPPACGZOOCGX-UHFFFAOYSA-N") + "short\trow\n")
    assert list(read_chedl(wheel)) == [("CCO", "LFQSCWFLJHTTHZ-UHFFFAOYSA-N", "ethanol"),
                                       ("CC(C)=O", "CSCPPACGZOOCGX-UHFFFAOYSA-N", "ethanol"), ("", "", "")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_shipped_source_fills_every_band(params_file, tmp_path, monkeypatch):
    """The real `chemicals` wheel (fetched with pip download, as the stage does)."""
    monkeypatch.chdir(tmp_path)
    _train_split(tmp_path, train=["CCO"], test=[])
    stats = real_molecules.main(params=params_file({"real_molecules": {"source": "chedl", "path": None, "per_band": 20,
                                                                    "band_edges": [3, 13, 16, 21, 31, 61]}}))
    df = pd.read_parquet(paths.REAL_MOLECULES / "molecules.parquet")
    assert stats["kept"] == {"3-12": 20, "13-15": 20, "16-20": 20, "21-30": 20, "31-60": 20}
    assert stats["source"].startswith("chedl (chemicals==1.5.2")
    assert df.inchikey.is_unique and (df.name.str.len() > 0).mean() > 0.9  # PubChem's own names came along


def test_nci_catalogue_is_rdkits_sample_in_hash_order(params_file, tmp_path, monkeypatch):
    """`nci`: the NCI Open Database sample RDKit ships, a catalogue ChEDL training never saw."""
    from seqtune.config import RealMoleculesConfig

    rows, described = real_molecules.read_rows(RealMoleculesConfig(source="nci"))
    assert described.startswith("nci") and len(rows) > 4000
    assert [split_hash(s) for s, _ in rows[:50]] == sorted(split_hash(s) for s, _ in rows[:50])
    monkeypatch.chdir(tmp_path)
    _train_split(tmp_path, train=[rows[0][0]], test=[])  # the first NCI compound is "in training"
    stats = real_molecules.main(params=params_file({"real_molecules": {"source": "nci", "per_band": 5, "workers": 1,
                                                                    "band_edges": [3, 13, 16, 21, 31, 61]}}))
    df = pd.read_parquet(paths.REAL_MOLECULES / "molecules.parquet")
    assert standardise(rows[0][0]).inchikey not in set(df.inchikey)
    assert stats["kept"] == {b: 5 for b in ("3-12", "13-15", "16-20", "21-30", "31-60")}
    assert stats["same_catalogue"] is False  # the molecules table above names no source


def test_same_catalogue_says_when_training_drew_from_the_scored_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / paths.MOLECULES).mkdir(parents=True)
    stats = tmp_path / paths.MOLECULES / "stats.json"
    stats.write_text(json.dumps({"source": "chedl (chemicals==1.5.2: PubChem compounds with CAS numbers)"}))
    assert real_molecules.same_catalogue("chedl") and not real_molecules.same_catalogue("nci")
    stats.write_text(json.dumps({"source": "moses (molsets==0.3.1)"}))
    assert not real_molecules.same_catalogue("chedl")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chedl_trains_on_the_compounds_it_ships():
    """molecules.source chedl reads the real `chemicals` wheel's SMILES in file order."""
    from seqtune.config import MoleculesConfig
    from seqtune.pipeline.molecule_sources import chedl_wheel, iter_smiles

    got = list(iter_smiles(MoleculesConfig(source="chedl", max_raw=50)))
    shipped = [s for s, _, _ in read_chedl(chedl_wheel())][:50]
    assert got == shipped and len(got) == 50 and all(got)
