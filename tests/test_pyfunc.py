"""The registered MLflow model is code, not a pickle; versions pickled before that are refused
unless allowed, and registering their folder again logs it as code.

    .venv/bin/python -m pytest -q tests/test_pyfunc.py

Real MLflow (the per-test sqlite store from conftest) and the tiny model folder of
tests/test_registry.py. A "pickled version" is made the way `seqtune register` made every
version before models from code: the same registration with the old `pyfunc.log_model`
(a cloudpickle of `SeqtuneModel`, named by the pre-layout module `seqtune.pyfunc`) and no
`logged_as` tag.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seqtune.pipeline import pyfunc, registry
from seqtune.pipeline import registry_store as store
from seqtune.pipeline.register import register_model
from tests.test_registry import NAME, TASK, make_model, metrics, params, workdir  # noqa: F401 (fixtures)

SOURCES = ["CCO", "c1ccccc1", "CC(=O)O"]


def _download(version: int, dest: Path) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}/{version}", dst_path=str(dest)))


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_registration_logs_the_model_as_code_not_a_pickle(params, make_model, tmp_path):
    folder = make_model(0)
    assert register_model(TASK, folder, metrics(0.25), params=params).version == 1
    local = _download(1, tmp_path / "dl")

    files = _files(local)
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
    assert "python_model.pkl" not in files and "pyfunc_model.py" in files
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert Path(flavor["model_code_path"]).name == "pyfunc_model.py" and "python_model" not in flavor
    # The code that loading runs is the readable file from the package, byte for byte.
    code = (local / "pyfunc_model.py").read_text()
    assert code == pyfunc.MODEL_CODE.read_text() and "mlflow.models.set_model(SeqtuneModel())" in code
    assert "cloudpickle" not in (local / "requirements.txt").read_text()
    assert pyfunc.pickled_class(local) is None
    # The model folder is the artifact, unchanged (what `bento import` and a warm start read).
    assert store.content_hash(pyfunc.hf_model_folder(local)) == store.content_hash(folder)
    from mlflow import MlflowClient

    assert store.logged_as_code(MlflowClient().get_model_version(NAME, "1"))


def _old_log_model(model_dir, *, name="model", decoding="greedy", num_beams=4, model_config=None):
    """`pyfunc.log_model` as it was before models from code: the class instance, cloudpickled."""
    import mlflow

    return mlflow.pyfunc.log_model(
        name=name, python_model=pyfunc.SeqtuneModel(), artifacts={pyfunc.HF_MODEL_KEY: str(Path(model_dir).resolve())},
        pip_requirements=pyfunc.pip_requirements(), signature=pyfunc.signature(decoding, num_beams),
        model_config=dict(model_config or {}),
    )


def _artifact_dir(version: int) -> Path:
    """Where the version's model lies in the (local) artifact store: what a writer could change."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.utils.file_utils import local_file_uri_to_path

    mv = MlflowClient().get_model_version(NAME, str(version))
    assert mv.source.startswith("models:/m-"), mv.source  # the logged model the version was made from
    model_id = mv.source.removeprefix("models:/")
    return Path(local_file_uri_to_path(mlflow.get_logged_model(model_id).artifact_location))


def _as_before_the_layout(version: int) -> bytes:
    """Rewrite the version's pickle, in the artifact store, to name `seqtune.pyfunc` (as every
    version registered before the package layout does); returns the pickle."""
    import cloudpickle

    where = _artifact_dir(version)
    assert (where / "python_model.pkl").exists()
    blob = cloudpickle.dumps(pyfunc.SeqtuneModel(), protocol=2)  # protocol 2: module names as text
    assert b"seqtune.pipeline.pyfunc\nSeqtuneModel\n" in blob
    old = blob.replace(b"seqtune.pipeline.pyfunc\n", b"seqtune.pyfunc\n")
    (where / "python_model.pkl").write_bytes(old)
    return old


@pytest.fixture
def pickled_champion(params, make_model, monkeypatch):
    """v1, the champion, registered from model0 the way seqtune did before models from code."""
    from mlflow import MlflowClient

    folder = make_model(0)
    with monkeypatch.context() as m:
        m.setattr(pyfunc, "log_model", _old_log_model)
        assert register_model(TASK, folder, metrics(0.25), params=params).champion == 1
    MlflowClient().delete_model_version_tag(NAME, "1", store.LOGGED_AS_TAG)
    assert b"seqtune.pyfunc\n" in _as_before_the_layout(1)
    return folder


@pytest.fixture
def unpickled(monkeypatch):
    """Every cloudpickle load MLflow does, recorded (and then done)."""
    import mlflow.pyfunc.model as pyfunc_model

    calls = []
    real = pyfunc_model._maybe_decompress_cloudpickle_load

    def spy(path, compression):
        calls.append(Path(path).name)
        return real(path, compression)

    monkeypatch.setattr(pyfunc_model, "_maybe_decompress_cloudpickle_load", spy)
    return calls


def test_pickled_versions_are_refused_unless_allowed(pickled_champion, params, tmp_path, unpickled, monkeypatch):
    from seqtune.serving import predict

    assert pyfunc.pickled_class(_download(1, tmp_path / "dl")) == "python_model.pkl"
    monkeypatch.delenv(pyfunc.ALLOW_PICKLE_ENV, raising=False)
    for setting in (None, "false"):  # MLflow's default (unset: true there) is not a decision to unpickle
        if setting:
            monkeypatch.setenv(pyfunc.ALLOW_PICKLE_ENV, setting)
        with pytest.raises(RuntimeError, match=r"python_model\.pkl.*does not unpickle.*`seqtune register`.*"
                                               rf"{pyfunc.ALLOW_PICKLE_ENV}=true"):
            predict.main(TASK, SOURCES, params=params)
    assert unpickled == []  # refused before MLflow touched the pickle

    # Allowed explicitly, the pre-layout pickle still loads (through the seqtune.pyfunc alias) and answers.
    monkeypatch.setenv(pyfunc.ALLOW_PICKLE_ENV, "true")
    answers = predict.main(TASK, SOURCES, params=params)
    assert unpickled == ["python_model.pkl"]
    assert [a["version"] for a in answers] == ["1"] * 3 and len({a["output"] for a in answers}) == 3


def test_registering_again_relogs_a_pickled_champion_as_code(pickled_champion, params, unpickled, monkeypatch):
    """`seqtune register` of the champion's folder: a new version from code takes over the alias,
    and the in-process load answers exactly as the pickled version did."""
    from seqtune.serving import predict

    monkeypatch.setenv(pyfunc.ALLOW_PICKLE_ENV, "true")
    before = predict.main(TASK, SOURCES, params=params)
    monkeypatch.delenv(pyfunc.ALLOW_PICKLE_ENV)
    unpickled.clear()

    res = register_model(TASK, pickled_champion, metrics(0.25), params=params)
    assert (res.version, res.created, res.promoted, res.champion) == (2, True, True, 2)
    assert "v2 is champion v1's model (same content), logged as code instead of a pickle" == res.reason
    after = predict.main(TASK, SOURCES, params=params)
    assert unpickled == []
    assert [{**a, "version": "1"} for a in after] == before and {a["version"] for a in after} == {"2"}
    again = register_model(TASK, pickled_champion, metrics(0.25), params=params)  # idempotent from here on
    assert (again.version, again.created, again.promoted) == (2, False, False)


def test_in_process_predict_answers_like_the_folder(params, make_model):
    """`seqtune predict` without --url, on a version from code: the service's settings, the
    folder's answers (the lively tiny model answers each input differently)."""
    from seqtune.config import load_params
    from seqtune.inference.loader import load_generator
    from seqtune.serving import predict

    folder = make_model(0)
    register_model(TASK, folder, metrics(0.25), params=params)
    cfg = load_params(params).serve
    gen = load_generator(folder, precision=cfg.precision, answer_vocab=cfg.answer_vocab)
    gen.max_new_tokens = cfg.max_new_tokens
    want = predict.predict_items(gen, SOURCES, decoding=cfg.decoding_for(TASK), num_beams=cfg.num_beams,
                                 max_input_length=cfg.max_input_length)
    got = predict.main(TASK, SOURCES, params=params)
    assert len({w["output"] for w in want}) == len(SOURCES)
    assert got == [{**w, "model": NAME, "version": "1"} for w in want]


def test_the_registered_model_decodes_verified_only_where_it_is_fair(params, make_model, monkeypatch):
    """`verified` asked of the MLflow model of smiles2formula, through MLflow's own predict and
    its params: smiles2formula's check is RDKit's formula, so keeping the beam that checks out
    would be the rule-based tool answering. It decodes greedy, as evaluation and the service do
    (the rule is applied inside the generator): no beams searched, nothing checked."""
    register_model(TASK, make_model(0), metrics(0.25), params=params)
    loaded = pyfunc.load_model(f"models:/{NAME}/1")
    gen = loaded.unwrap_python_model().generator
    greedy = [p.output for p in gen.predict(SOURCES)]
    searched, checked = [], []
    real = gen.generate
    monkeypatch.setattr(gen, "generate", lambda sources, **kw: searched.append(kw.get("num_beams", 1)) or real(sources, **kw))
    monkeypatch.setattr(gen.task, "verify", lambda sources, outputs: checked.append(len(outputs)) or [True] * len(outputs))
    got = loaded.predict(SOURCES, params={"decoding": "verified", "num_beams": 3})
    assert (searched, checked) == ([1], [])
    assert list(got) == greedy and len(set(greedy)) == len(SOURCES)


def test_a_version_whose_code_was_changed_is_refused_not_run(params, make_model, tmp_path):
    """Models from code run the version's code file on load, as a pickle would run itself: seqtune's
    loader runs it only when it is seqtune's own file (its docstring aside) and ships no other code."""
    import mlflow

    from seqtune.serving import predict

    register_model(TASK, make_model(0), metrics(0.25), params=params)
    where = _artifact_dir(1)
    code = where / "pyfunc_model.py"
    original = code.read_text()
    reworded = original.replace("The registered MLflow model, as code", "The model, reworded")
    assert reworded != original
    code.write_text(reworded)  # prose only: still seqtune's code, it loads
    assert [a["version"] for a in predict.main(TASK, SOURCES, params=params)] == ["1"] * 3

    ran = tmp_path / "ran"
    code.write_text(original + f"\nimport pathlib\npathlib.Path({str(ran)!r}).touch()\n")
    with pytest.raises(RuntimeError, match=r"refusing to load models:/seqtune-smiles2formula/1: its pyfunc_model\.py "
                                           r"is not seqtune's"):
        predict.main(TASK, SOURCES, params=params)
    assert not ran.exists()  # refused before it ran ...
    mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    assert ran.exists()  # ... which MLflow's own loader does

    code.write_text(original)
    mlmodel = yaml.safe_load((where / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["code"] = "code"  # a folder MLflow would put first on sys.path
    (where / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (where / "code").mkdir()
    (where / "code" / "anything.py").write_text("")
    with pytest.raises(RuntimeError, match="ships code that MLflow puts on sys.path"):
        predict.main(TASK, SOURCES, params=params)
