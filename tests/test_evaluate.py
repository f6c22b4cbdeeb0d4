"""Evaluation: metrics on hand-made cases, size buckets, and the stage end to end on the tiny model.

    .venv/bin/python -m pytest -q tests/test_evaluate.py

Real RDKit, real OPSIN (Java), a real MLflow sqlite store (conftest), a tiny random model.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from seqtune.pipeline import evaluate
from seqtune.pipeline.evaluate import bucket_label, by_size, mean_metrics
from seqtune.tasks import get_task


# ---------------------------------------------------------------------------------------
# metrics on hand-made cases


def test_smiles2iupac_metrics_count_structures_not_spellings():
    task = get_task("smiles2iupac")
    ex = {"source": "CCO", "target": "ethanol", "smiles": "CCO"}
    preds = ["ethanol", "ethyl alcohol", "methanol", "definitely not a name ((", ""]
    rows = task.score_batch(preds, [ex] * len(preds))
    right, synonym, other, garbage, empty = rows
    assert right["exact_match"] == right["structure_match"] == right["parse_rate"] == right["tanimoto"] == 1.0
    # Another valid name of the same structure: not the string, but the structure.
    assert synonym["exact_match"] == 0.0 and synonym["structure_match"] == 1.0
    # A valid name of a different molecule parses, but is wrong; Tanimoto grades how wrong.
    assert other["parse_rate"] == 1.0 and other["structure_match"] == 0.0 and 0.0 <= other["tanimoto"] < 1.0
    for bad in (garbage, empty):
        assert bad["parse_rate"] == bad["structure_match"] == bad["tanimoto"] == 0.0
    m = mean_metrics(rows)
    assert m["structure_match"] == pytest.approx(2 / 5) and m["exact_match"] == pytest.approx(1 / 5)
    assert m["output_len"] == pytest.approx(sum(len(p) for p in preds) / 5)


def test_iupac2smiles_metrics_use_canonical_structures():
    task = get_task("iupac2smiles")
    ex = {"source": "ethanol", "target": "CCO", "smiles": "CCO"}
    preds = ["CCO", "OCC", "C(O)C", "CCN", "C1CC", "not smiles"]
    rows = task.score_batch(preds, [ex] * len(preds))
    assert [r["exact_match"] for r in rows] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert [r["validity"] for r in rows] == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert rows[1]["char_similarity"] < 1.0  # equivalent, but written differently
    assert rows[4]["tanimoto"] == rows[5]["tanimoto"] == 0.0 and 0.0 < rows[3]["tanimoto"] < 1.0


def test_smiles2formula_baseline_is_the_ceiling():
    task = get_task("smiles2formula")
    examples = [{"source": s, "target": CalcMolFormula(Chem.MolFromSmiles(s)), "smiles": s} for s in ("CCO", "c1ccccc1")]
    rows = task.score_batch(task.baseline([e["source"] for e in examples]), examples)
    assert mean_metrics(rows)["exact_match"] == 1.0
    assert task.score_batch(["C2H6"], examples[:1])[0]["exact_match"] == 0.0


# ---------------------------------------------------------------------------------------
# size buckets


def test_bucket_labels_cover_every_size():
    edges = [10, 15, 20]
    assert [bucket_label(h, edges) for h in (1, 9, 10, 14, 15, 19, 20, 99)] == [
        "0-9", "0-9", "10-14", "10-14", "15-19", "15-19", "20+", "20+",
    ]


def test_by_size_groups_items_and_baselines():
    model = [{"exact_match": v, "output_len": 3.0} for v in (1, 0, 1, 1, 0)]
    rule = [{"exact_match": 1.0, "output_len": 3.0}] * 5
    rows = by_size([5, 12, 13, 30, 31], {"model": model, "baseline_rule": rule}, [10, 15, 20], "exact_match")
    assert [r["heavy_atoms"] for r in rows] == ["0-9", "10-14", "20+"]  # empty buckets are left out
    assert [r["n"] for r in rows] == [1, 2, 2]
    assert [r["exact_match"] for r in rows] == [1.0, 0.5, 0.5]
    assert all(r["baseline_rule.exact_match"] == 1.0 for r in rows)


# ---------------------------------------------------------------------------------------
# the stage end to end on the tiny model

MOLECULES = {  # smiles -> IUPAC name
    "CCO": "ethanol",
    "c1ccccc1": "benzene",
    "CC(=O)O": "acetic acid",
    "CCN(CC)CC": "N,N-diethylethanamine",
    "CC(C)O": "propan-2-ol",
    "CC(=O)Oc1ccccc1C(=O)O": "2-acetyloxybenzoic acid",
}


@pytest.fixture
def workspace(tmp_path, monkeypatch, tiny_model_dir, lively_model_dir, params_file):
    """A repo-like folder: a "fine-tuned" tiny model with its training run, a base model,
    and a tiny test set; returns a function building it for one task."""
    monkeypatch.chdir(tmp_path)

    def make(task: str, **evaluate_params):
        from seqtune import paths
        from seqtune.tracking import setup_mlflow

        mlflow = setup_mlflow(None, "seqtune")
        with mlflow.start_run(run_name=f"train-{task}") as run:
            mlflow.log_param("epochs", 2)
        model = paths.model_dir(task)
        shutil.copytree(lively_model_dir, model)
        card = {"task": task, "format": "instruction", "base_model": "tiny", "data_hash": "dh", "test_hash": "th", "method": "full"}
        (model / "seqtune.json").write_text(json.dumps(card))
        epochs = [{"epoch": 1, "loss": 2.0, "eval_loss": 2.1, "val_exact_match": 0.0, "val_output_len": 4.0},
                  {"epoch": 2, "loss": 1.5, "eval_loss": 1.9, "val_exact_match": 0.25, "val_output_len": 6.0}]
        (model / "epochs.json").write_text(json.dumps(epochs))
        (model / "run_id").write_text(run.info.run_id)
        shutil.copytree(tiny_model_dir, paths.BASE_MODEL)

        rows = []
        for smi, name in MOLECULES.items():
            mol = Chem.MolFromSmiles(smi)
            source, target = {"smiles2formula": (smi, CalcMolFormula(mol)), "smiles2iupac": (smi, name),
                              "iupac2smiles": (name, Chem.MolToSmiles(mol))}[task]
            rows.append({"source": source, "target": target, "smiles": Chem.MolToSmiles(mol),
                         "inchikey": Chem.MolToInchiKey(mol), "heavy_atoms": mol.GetNumHeavyAtoms()})
        ds = paths.dataset_dir(task)
        ds.mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(ds / "test.parquet")
        (ds / "stats.json").write_text(json.dumps({"format": "instruction", "data_hash": "dh", "test_hash": "th-stats"}))
        base = {"n_eval": 5, "batch_size": 2, "max_new_tokens": 6, "num_beams": 2, "size_buckets": [5, 10]}
        params = params_file({"tasks": [task], "evaluate": {**base, **evaluate_params}})
        return params, model, run.info.run_id, rows[:5]

    return make


def test_evaluate_stage_end_to_end(workspace, tmp_path):
    import mlflow

    from seqtune.inference.loader import load_generator

    params, model, run_id, rows = workspace("smiles2formula")
    metrics = evaluate.main("smiles2formula", params=params)

    written = json.loads((tmp_path / "metrics" / "smiles2formula.json").read_text())
    assert written == metrics
    assert metrics["n"] == 5 and metrics["decoding"] == "greedy" and metrics["primary_metric"] == "exact_match"
    assert metrics["test_hash"] == "th-stats" and metrics["data_hash"] == "dh" and metrics["eval_hash"]
    assert metrics["baseline_rule"]["exact_match"] == 1.0  # RDKit is the ceiling
    assert 0.0 <= metrics["baseline_zero_shot"]["exact_match"] <= 1.0
    assert set(metrics["baseline_zero_shot"]) == {"exact_match", "element_accuracy", "char_similarity", "output_len"}

    # The exact saved artifact was scored: its greedy outputs are the predictions written.
    want = [p.output for p in load_generator(model, max_new_tokens=6).predict([r["source"] for r in rows])]
    assert len(set(want)) == len(want)  # distinct outputs, so the comparison below can fail
    items = [json.loads(line) for line in (tmp_path / "data" / "predictions" / "smiles2formula.jsonl").read_text().splitlines()]
    assert [i["prediction"] for i in items] == want
    assert [i["target"] for i in items] == [r["target"] for r in rows]
    assert all({"source", "heavy_atoms", "exact_match", "char_similarity", "output_len", "baseline_rule"} <= set(i) for i in items)
    assert metrics["exact_match"] == pytest.approx(sum(i["exact_match"] for i in items) / 5)

    by_epoch = json.loads((tmp_path / "plots" / "smiles2formula" / "by_epoch.json").read_text())
    assert [r["epoch"] for r in by_epoch] == [1, 2] and by_epoch[1]["val_exact_match"] == 0.25
    sizes = json.loads((tmp_path / "plots" / "smiles2formula" / "by_size.json").read_text())
    assert sum(r["n"] for r in sizes) == 5
    assert {r["heavy_atoms"] for r in sizes} <= {"0-4", "5-9", "10+"}
    assert all("baseline_zero_shot.exact_match" in r for r in sizes)
    for png in ("by_epoch.png", "by_size.png"):
        data = (tmp_path / "plots" / "smiles2formula" / "png" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    run = mlflow.get_run(run_id)  # logged into the training run
    assert run.data.metrics["eval.exact_match"] == metrics["exact_match"]
    assert run.data.metrics["eval.baseline_rule.exact_match"] == 1.0
    assert run.data.tags["evaluate.decoding"] == "greedy"
    # why it ran in that precision: the bf16 verdict behind auto (or fp32 asked)
    reason = run.data.tags["evaluate.precision_reason"]
    assert reason == "fp32 asked" or f" -> {metrics['precision']}: " in reason, reason
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "evaluation")}
    assert {"evaluation/smiles2formula.json", "evaluation/smiles2formula.jsonl", "evaluation/plots"} <= logged
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written left behind


def test_verified_decoding_reports_greedy_alongside(workspace, tmp_path):
    params, *_ = workspace("smiles2iupac", decoding="verified", zero_shot_baseline=False, n_eval=3)
    metrics = evaluate.main("smiles2iupac", params=params)
    assert metrics["decoding"] == "verified" and metrics["primary_metric"] == "structure_match"
    assert set(metrics["greedy"]) >= {"structure_match", "exact_match", "parse_rate", "tanimoto"}
    assert metrics["verified_gain"] == pytest.approx(metrics["structure_match"] - metrics["greedy"]["structure_match"])
    assert 0.0 <= metrics["verified_rate"] <= metrics["structure_match"] + 1e-9  # verified implies right
    assert "baseline_zero_shot" not in metrics
    # openclatura names these small molecules correctly: the rule baseline is (near) perfect.
    assert metrics["baseline_rule"]["structure_match"] == 1.0
    items = [json.loads(line) for line in (tmp_path / "data" / "predictions" / "smiles2iupac.jsonl").read_text().splitlines()]
    assert len(items) == 3 and all(isinstance(i["verified"], bool) and "greedy" in i for i in items)


def test_verified_decoding_is_greedy_where_the_check_is_the_answer(workspace):
    # RDKit's formula is both the check and the rule-based answer: verified beams would score
    # the tool, not the model, so smiles2formula decodes (and reports) greedy.
    params, *_ = workspace("smiles2formula", decoding="verified", zero_shot_baseline=False, n_eval=3)
    metrics = evaluate.main("smiles2formula", params=params)
    assert metrics["decoding"] == "greedy"
    assert "greedy" not in metrics and "verified_rate" not in metrics


def test_errors_say_what_to_do(workspace, tmp_path):
    from seqtune import paths

    params, model, *_ = workspace("smiles2formula")
    shutil.rmtree(paths.BASE_MODEL)
    with pytest.raises(FileNotFoundError, match="seqtune base-model"):
        evaluate.main("smiles2formula", params=params)
    shutil.rmtree(paths.dataset_dir("smiles2formula"))
    with pytest.raises(FileNotFoundError, match="seqtune data smiles2formula"):
        evaluate.main("smiles2formula", params=params)
    shutil.rmtree(model)
    with pytest.raises(FileNotFoundError, match="seqtune train smiles2formula"):
        evaluate.main("smiles2formula", params=params)
    assert not (tmp_path / "metrics").exists()  # a failed stage writes no metrics
