"""Registry: registration, idempotency, champion promotion and rollback, the pyfunc model.

    .venv/bin/python -m pytest -q tests/test_registry.py

Real MLflow (a per-test sqlite store from conftest), a real tiny model folder; the task is
smiles2formula (RDKit only, no Java) so the tests stay fast.
"""

from __future__ import annotations

import json
import shutil

import pytest

from seqtune.pipeline import register, registry
from seqtune.pipeline import registry_store as store
from seqtune.pipeline.register import RegisterResult, register_model

TASK = "smiles2formula"
NAME = f"seqtune-{TASK}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """cwd = tmp_path, so relative data/ paths and the artifact folder stay out of the repo."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def params(params_file, workdir):
    return params_file({"tasks": [TASK]})


ANSWER_IDS = [3, *range(10, 40)]
"""The answer vocabulary the test models' cards record (the tiny tokenizer's EOS and 30 characters)."""


@pytest.fixture
def make_model(lively_model_dir, workdir):
    """A "fine-tuned" folder: the tiny model + seqtune.json; `variant` changes its content."""

    def make(variant: int = 0, *, run_id: str | None = None, dest=None):
        out = dest or workdir / f"model{variant}"
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(lively_model_dir, out)
        card = {"task": TASK, "format": "plain", "base_model": "tiny", "data_hash": "d0", "test_hash": "t0", "method": "full",
                "answer_token_ids": ANSWER_IDS}
        (out / "seqtune.json").write_text(json.dumps(card))
        (out / "training_summary.json").write_text(json.dumps({"variant": variant}))
        if run_id:
            (out / "run_id").write_text(run_id + "\n")
        return out

    return make


def metrics(value: float, test_hash: str = "t0") -> dict:
    return {
        "primary_metric": "exact_match",
        "exact_match": value,
        "char_similarity": 0.5,
        "test_hash": test_hash,
        "data_hash": "d0",
        "decoding": "greedy",
        "n": 4,
        "max_new_tokens": 6,
        "num_beams": 2,
        "baseline_rule": {"exact_match": 1.0},
    }


def test_first_registration_logs_into_training_run_and_becomes_champion(params, make_model):
    import mlflow

    from seqtune.tracking import setup_mlflow

    setup_mlflow(None, "seqtune")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
    folder = make_model(0, run_id=run.info.run_id)

    res = register_model(TASK, folder, metrics(0.25), params=params)
    assert res == RegisterResult(1, True, True, res.reason, 1)
    assert "first champion" in res.reason

    champ = registry.champion(TASK, params=params)
    assert int(champ.version) == 1
    assert champ.run_id == run.info.run_id  # the model was logged into the training run
    tags = champ.tags
    assert tags["test_hash"] == "t0" and tags["data_hash"] == "d0" and tags["base_model"] == "tiny"
    assert tags["format"] == "plain" and tags["method"] == "full"
    assert tags["primary_metric"] == "exact_match" and float(tags["primary_metric_value"]) == 0.25
    assert tags["content_hash"] == store.content_hash(folder)
    logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged["eval.exact_match"] == 0.25 and logged["eval.baseline_rule.exact_match"] == 1.0


def test_registering_the_same_folder_twice_creates_nothing(params, make_model):
    from mlflow import MlflowClient

    folder = make_model(0)
    first = register_model(TASK, folder, metrics(0.25), params=params)
    # A new run_id file (e.g. bookkeeping) does not change the model's content.
    (folder / "run_id").write_text("something-else")
    again = register_model(TASK, folder, metrics(0.25), params=params)
    assert (again.version, again.created, again.promoted) == (first.version, False, False)
    assert "already registered" in again.reason
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == 1
    assert len(store.alias_history(MlflowClient(), NAME)) == 1

    # Re-evaluating the same folder (another n_eval) refreshes the scores, still creates nothing.
    rescored = register_model(TASK, folder, {**metrics(0.4), "eval_hash": "e2", "n": 8}, params=params)
    assert (rescored.version, rescored.created, rescored.promoted) == (1, False, False)
    assert "scores were updated" in rescored.reason
    tags = MlflowClient().get_model_version(NAME, "1").tags
    assert (tags["eval_hash"], tags["n_eval"], float(tags["primary_metric_value"])) == ("e2", "8", 0.4)
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == 1


def test_promotion_rules_and_rollback(params, make_model):
    from mlflow import MlflowClient

    r1 = register_model(TASK, make_model(1), metrics(0.30), params=params)
    r2 = register_model(TASK, make_model(2), metrics(0.50), params=params)  # better: moves
    assert r2.promoted and r2.champion == 2 and "beats" in r2.reason
    r3 = register_model(TASK, make_model(3), metrics(0.40), params=params)  # worse: stays
    assert not r3.promoted and r3.champion == 2 and "does not beat" in r3.reason
    r4 = register_model(TASK, make_model(4), metrics(0.50), params=params)  # a tie does not beat
    assert not r4.promoted and r4.champion == 2
    r5 = register_model(TASK, make_model(5), metrics(0.90, "other"), params=params)  # other test set
    assert not r5.promoted and "another test set" in r5.reason
    assert int(registry.champion(TASK, params=params).version) == 2
    assert r1.promoted

    with pytest.raises(ValueError, match="--force"):
        registry.promote(TASK, 5, params=params)  # better number, but another test set
    with pytest.raises(ValueError, match="--force"):
        registry.promote(TASK, 3, params=params)  # worse
    with pytest.raises(ValueError, match="no version 42"):
        registry.promote(TASK, 42, params=params)
    assert int(registry.champion(TASK, params=params).version) == 2  # refusals moved nothing

    assert "forced" in registry.promote(TASK, 5, force=True, params=params)
    assert int(registry.champion(TASK, params=params).version) == 5
    assert registry.rollback(TASK, params=params) == 2
    registry.promote(TASK, 4, params=params)  # equal score on the same test set: allowed by hand
    assert int(registry.champion(TASK, params=params).version) == 4

    # Rollback is an undo stack: 4 -> 2 -> 1 (the undone 5 is skipped), then nothing is left.
    assert [registry.rollback(TASK, params=params) for _ in range(2)] == [2, 1]
    assert int(registry.champion(TASK, params=params).version) == 1
    with pytest.raises(RuntimeError, match="nothing to roll back"):
        registry.rollback(TASK, params=params)

    history = store.alias_history(MlflowClient(), NAME)
    assert [(h["version"], h["by"]) for h in history] == [
        (1, "register"), (2, "register"), (5, "promote --force"), (2, "rollback"),
        (4, "promote"), (2, "rollback"), (1, "rollback"),
    ]
    assert history[2]["previous"] == 2 and all(h["at"] and h["reason"] for h in history)


def test_champion_pyfunc_predicts_like_the_generator(params, make_model):
    import mlflow
    import pandas as pd

    from seqtune.inference.loader import load_generator

    folder = make_model(0)
    register_model(TASK, folder, metrics(0.1), params=params)
    uri = registry.champion_uri(TASK, params=params)
    assert uri == f"models:/{NAME}@champion"

    sources = ["CCO", "c1ccccc1", "CC(=O)O"]
    want = [p.output for p in load_generator(folder, max_new_tokens=6).predict(sources)]
    assert len(set(want)) == len(want)  # distinct outputs, so the comparisons can fail
    model = mlflow.pyfunc.load_model(uri)
    assert model.predict(sources, params={"decoding": "greedy"}) == want
    assert model.predict(pd.DataFrame({"source": sources}), params={"decoding": "greedy"}) == want
    beams = [p.output for p in load_generator(folder, max_new_tokens=6).predict(sources, decoding="beam", num_beams=2)]
    assert beams != want  # beam search really differs here, so params reach the model
    assert model.predict(sources, params={"decoding": "beam"}) == beams  # num_beams=2 from the metrics


def test_champion_loads_in_the_precision_the_loader_asks_for(params, make_model):
    """`seqtune predict` without --url loads the champion with serve.precision: the logged
    model must accept that override (MLflow ignores load-time keys the logged config lacks)."""
    import mlflow
    import torch

    from seqtune.inference.devices import resolve_precision

    register_model(TASK, make_model(0), metrics(0.1), params=params)
    uri = registry.champion_uri(TASK, params=params)
    default = mlflow.pyfunc.load_model(uri).unwrap_python_model().generator
    assert default.precision == resolve_precision("auto", torch.device("cpu"))
    fp32 = mlflow.pyfunc.load_model(uri, model_config={"precision": "fp32"}).unwrap_python_model().generator
    assert fp32.precision == "fp32" and fp32.model.dtype == torch.float32
    # The answer-vocabulary head is on by default and `answer_vocab: false` (serve.answer_vocab) turns it off.
    assert default.answer_vocab == fp32.answer_vocab == len(ANSWER_IDS)
    full = mlflow.pyfunc.load_model(uri, model_config={"answer_vocab": False}).unwrap_python_model().generator
    assert full.answer_vocab is None
    with pytest.raises(ValueError, match="unknown precision"):
        mlflow.pyfunc.load_model(uri, model_config={"precision": "fp8"})


def test_models_registered_before_the_package_layout_still_unpickle():
    """MLflow pickles the pyfunc class by reference: versions registered before the move to
    seqtune.pipeline name `seqtune.pyfunc.SeqtuneModel`, which must still resolve."""
    import cloudpickle

    from seqtune.pipeline.pyfunc import SeqtuneModel

    blob = cloudpickle.dumps(SeqtuneModel(), protocol=2)  # protocol 2: module names as text
    assert b"seqtune.pipeline.pyfunc\nSeqtuneModel\n" in blob  # by reference, not by value
    old = blob.replace(b"seqtune.pipeline.pyfunc\n", b"seqtune.pyfunc\n")
    assert old != blob and type(cloudpickle.loads(old)) is SeqtuneModel


def test_register_stage_writes_registry_json(params, make_model, workdir):
    from seqtune import paths

    with pytest.raises(FileNotFoundError, match="seqtune evaluate"):
        register.main(params=params)
    make_model(0, dest=workdir / paths.model_dir(TASK))
    paths.metrics_path(TASK).parent.mkdir(parents=True)
    paths.metrics_path(TASK).write_text(json.dumps(metrics(0.2)))

    summary = register.main(params=params)
    again = register.main(params=params)  # the stage reruns on every repro: nothing new
    written = json.loads((workdir / "data" / "registry.json").read_text())
    assert written[TASK] == again[TASK]
    assert summary[TASK]["created"] and summary[TASK]["champion"] == 1
    assert not again[TASK]["created"] and again[TASK]["version"] == 1


def test_errors_say_what_to_do(params, make_model, workdir, monkeypatch):
    assert registry.champion(TASK, params=params) is None
    with pytest.raises(RuntimeError, match="no champion .* `dvc repro`"):
        registry.champion_uri(TASK, params=params)
    from typer.testing import CliRunner

    from seqtune.cli import app

    res = CliRunner().invoke(app, ["registry", "show", TASK, "--params", str(params)])
    assert res.exit_code == 2 and "not registered yet" in res.output
    bare = make_model(0)
    (bare / "seqtune.json").unlink()
    with pytest.raises(FileNotFoundError, match="seqtune train"):
        register_model(TASK, bare, metrics(0.1), params=params)
    with pytest.raises(ValueError, match="primary metric"):
        register_model(TASK, make_model(1), {"primary_metric": "exact_match"}, params=params)
    corrupt = workdir / "corrupt.db"
    corrupt.write_bytes(b"this is not a sqlite database" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{corrupt}")
    with pytest.raises(RuntimeError, match="cannot open the MLflow store"):
        registry.champion(TASK, params=params)


def test_cli_tables(params, make_model, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps cells at the default 80 columns
    register_model(TASK, make_model(1), metrics(0.3), params=params)
    register_model(TASK, make_model(2), metrics(0.2), params=params)
    from typer.testing import CliRunner

    from seqtune.cli import app

    out = "".join(CliRunner().invoke(app, ["registry", verb, *args, "--params", str(params)]).output
                  for verb, args in (("list", []), ("show", [TASK])))
    assert "v1 ★" in out and "exact_match=0.3000" in out and "exact_match=0.2000" in out
    assert "champion: v1" in out and "first champion" in out

    # A refused promotion is one message and a non-zero exit, not a traceback.
    res = CliRunner().invoke(app, ["registry", "promote", TASK, "2", "--params", str(params)])
    assert res.exit_code == 2 and "--force" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["registry", "promote", TASK, "2", "--force", "--params", str(params)])
    assert res.exit_code == 0 and int(registry.champion(TASK, params=params).version) == 2
    res = CliRunner().invoke(app, ["registry", "rollback", TASK, "--params", str(params)])
    assert res.exit_code == 0 and "rolled back to v1" in res.output


def test_real_band_tag_lists_bands_in_size_order():
    from seqtune.pipeline.register import real_bands_tag

    # metrics/TASK.json sorts keys as strings: "13-15" < "3-12" < "31-60".
    metrics = {"real": {"13-15": {"n": 50, "structure_match": 0.06}, "3-12": {"n": 49, "structure_match": 0.02},
                        "31-60": {"n": 50, "structure_match": 0.0}}}
    assert real_bands_tag(metrics, "structure_match") == "3-12: 0.020 (n=49), 13-15: 0.060 (n=50), 31-60: 0.000 (n=50)"
    assert real_bands_tag({"structure_match": 0.2}, "structure_match") is None
