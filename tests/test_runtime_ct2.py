"""The CTranslate2 serving runtime (seqtune.serving.ct2): real conversions of a tiny Llama, real
ctranslate2 generation, compared with the PyTorch generator.

    .venv/bin/python -m pytest -x -q tests/test_runtime_ct2.py

The model is the lively tiny Llama (large random weights: outputs differ per input) with its
EOS row scaled (x1.3) so some answers end early while others run to max_new_tokens, and
SmolLM2's RoPE base (100,000; the tiny default is 10,000), which the converter must read from
transformers 5's `rope_parameters`. Its tokenizer is one character per token, so an output's
length counts its tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqtune.config import ConfigError, load_params

REPO = Path(__file__).resolve().parents[1]
TASK = "smiles2iupac"
SOURCES = ["CCO", "c1ccccc1O", "CC(=O)O", "CN", "ClCCBr", "O=C=O", "CCCCCCCC", "N#N", "OCCO", "CC(C)C",
           "CC(C)(C)c1ccc(O)cc1"]
MAX_NEW = 24
ANSWER_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-(),[] "


def _save(model, tokenizer, dst: Path, card: dict) -> Path:
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    (dst / "seqtune.json").write_text(json.dumps(card))
    return dst


@pytest.fixture(scope="session")
def champion(lively_model_dir, tmp_path_factory) -> Path:
    """A seqtune model folder: the lively tiny model, EOS row x1.3, RoPE base 100,000, and an
    answer vocabulary (lowercase letters, digits, a few signs, EOS) in its seqtune.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lively_model_dir)
    model = AutoModelForCausalLM.from_pretrained(lively_model_dir)
    with torch.no_grad():
        model.model.embed_tokens.weight[tok.eos_token_id] *= 1.3
    model.config.rope_parameters["rope_theta"] = 100_000.0
    ids = sorted(set(tok.convert_tokens_to_ids(list(ANSWER_CHARS))) | {tok.eos_token_id})
    card = {"task": TASK, "format": "instruction", "base_model": "tiny", "data_hash": "x", "test_hash": "y",
            "method": "full", "answer_token_ids": ids}
    return _save(model, tok, tmp_path_factory.mktemp("ct2-champion") / "model", card)


@pytest.fixture(scope="session")
def converted(champion, tmp_path_factory):
    """compute type -> the champion converted by seqtune.serving.ct2.convert."""
    from seqtune.serving.ct2 import COMPUTE_TYPES, convert

    root = tmp_path_factory.mktemp("ct2")
    return {c: convert(champion, root / c, c) for c in COMPUTE_TYPES}


def _torch(folder: Path, *, answer_vocab: bool, batch_size: int = 4):
    from seqtune.inference.loader import load_generator

    return load_generator(folder, device="cpu", precision="fp32", max_new_tokens=MAX_NEW, batch_size=batch_size,
                          answer_vocab=answer_vocab)


def _ct2(folder: Path, ct2_dir: Path, *, compute_type: str = "float32", answer_vocab: bool, batch_size: int = 4):
    from seqtune.serving.ct2 import CT2Generator

    return CT2Generator.load(folder, ct2_dir, compute_type=compute_type, max_new_tokens=MAX_NEW,
                             batch_size=batch_size, answer_vocab=answer_vocab, threads=1)


@pytest.mark.parametrize("answer_vocab", [False, True], ids=["full-vocab", "answer-vocab"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_float32_greedy_outputs_equal_the_torch_generators(champion, converted, answer_vocab, batch_size):
    want = [c[0] for c in _torch(champion, answer_vocab=answer_vocab, batch_size=batch_size).generate(SOURCES)]
    ct2 = _ct2(champion, converted["float32"], answer_vocab=answer_vocab, batch_size=batch_size)
    assert [c[0] for c in ct2.generate(SOURCES)] == want
    assert [p.output for p in ct2.predict(SOURCES)] == want  # the service's call: greedy
    # Outputs that can tell two generators apart: distinct, some cut at max_new_tokens, some
    # ended early by EOS.
    assert len(set(want)) >= len(SOURCES) - 1
    assert max(len(w) for w in want) == MAX_NEW and min(len(w) for w in want) < MAX_NEW // 2


def test_the_answer_vocabulary_limits_outputs_as_the_torch_head_does(champion, converted):
    full = _ct2(champion, converted["float32"], answer_vocab=False)
    limited = _ct2(champion, converted["float32"], answer_vocab=True)
    assert full.answer_vocab is None and limited.answer_vocab == len(set(ANSWER_CHARS)) + 1  # + EOS
    outs = [c[0] for c in limited.generate(SOURCES)]
    assert all(set(o) <= set(ANSWER_CHARS) for o in outs)
    # ...which the full vocabulary's outputs are not: the limit is really applied.
    assert not all(set(c[0]) <= set(ANSWER_CHARS) for c in full.generate(SOURCES))


def test_a_wrong_conversion_gives_other_outputs(champion, converted, tmp_path):
    """The equality above can fail: the same weights converted with the tiny default RoPE
    base (10,000; what a converter that missed transformers 5's `rope_parameters` would use)
    answer differently."""
    from seqtune.serving.ct2 import convert

    wrong = tmp_path / "wrong"
    shutil.copytree(champion, wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 10_000.0
    (wrong / "config.json").write_text(json.dumps(config))
    right = [c[0] for c in _ct2(champion, converted["float32"], answer_vocab=False).generate(SOURCES)]
    bad = [c[0] for c in _ct2(wrong, convert(wrong, tmp_path / "wrong-ct2", "float32"), answer_vocab=False)
           .generate(SOURCES)]
    assert sum(a != b for a, b in zip(right, bad)) >= len(SOURCES) // 2


def test_verified_decoding_is_the_torch_paths_over_ctranslate2_beams(champion, converted, monkeypatch):
    from seqtune.inference.generator import Generator
    from seqtune.serving.ct2 import CT2Generator

    assert CT2Generator.predict is Generator.predict  # reused, not copied
    gen = _ct2(champion, converted["float32"], answer_vocab=False)
    beams = gen.generate(SOURCES[:4], num_beams=4, num_return_sequences=4)
    assert [len(b) for b in beams] == [4] * 4 and all(len(set(b)) > 1 for b in beams)
    assert beams == gen.generate(SOURCES[:4], num_beams=4, num_return_sequences=4)  # deterministic
    # The task "verifies" only each item's third beam: verified decoding must answer with it.
    third = {(s, b[2]) for s, b in zip(SOURCES, beams)}
    monkeypatch.setattr(gen.task, "verify", lambda srcs, outs: [(s, o) in third for s, o in zip(srcs, outs)])
    preds = gen.predict(SOURCES[:4], decoding="verified", num_beams=4)
    assert [(p.output, p.verified) for p in preds] == [(b[2], True) for b in beams]
    monkeypatch.setattr(gen.task, "verify", lambda srcs, outs: [False] * len(outs))
    assert [(p.output, p.verified) for p in gen.predict(SOURCES[:4], decoding="verified")] == [(b[0], False) for b in beams]


def test_int8_conversion_is_smaller_and_generates(champion, converted):
    int8, fp32 = converted["int8_float32"], converted["float32"]
    assert (int8 / "model.bin").stat().st_size < 0.6 * (fp32 / "model.bin").stat().st_size
    gen = _ct2(champion, int8, compute_type="int8_float32", answer_vocab=True)
    assert gen.precision == "int8_float32" and "int8_float32" in gen.precision_reason
    outs = gen.generate(SOURCES)
    assert len(outs) == len(SOURCES) and all(len(c) == 1 and isinstance(c[0], str) for c in outs)
    assert gen.generate([]) == []


def test_a_folder_without_a_conversion_says_what_to_run(champion, tmp_path):
    with pytest.raises(FileNotFoundError, match="seqtune bento import"):
        _ct2(champion, tmp_path, answer_vocab=False)


@pytest.mark.parametrize(("key", "value"), [("runtime", "onnx"), ("runtime", "CTranslate2"),
                                            ("ct2_compute_type", "int4"), ("ct2_compute_type", "int8")])
def test_a_bad_runtime_knob_is_a_config_error(params_file, key, value):
    with pytest.raises(ConfigError, match=f"serve.{key}"):
        load_params(params_file({"serve": {key: value}}))


def test_the_shipped_runtime_is_torch_and_ctranslate2_is_accepted(params_file):
    assert load_params(REPO / "params.yaml").serve.runtime == "torch"
    serve = load_params(params_file({"serve": {"runtime": "ctranslate2", "ct2_compute_type": "float32"}})).serve
    assert (serve.runtime, serve.ct2_compute_type) == ("ctranslate2", "float32")


# ------------------------------------------------------------------ bento import and the service

SERVICE_PROBE = """
import json, sys
import service.service as svc
inst = svc.Seqtune.inner()
results = inst._predict("smiles2iupac", json.loads(sys.argv[1]))
info = inst.metadata_body()["tasks"]["smiles2iupac"]
print(json.dumps({"outputs": [r.output for r in results], "runtime": info["runtime"],
                  "precision": info["precision"], "answer_vocab": info["answer_vocab"]}))
"""


def _service(params: Path) -> subprocess.CompletedProcess:
    """The service, built in a subprocess from `params` (the current BentoML home), answering SOURCES."""
    env = dict(os.environ, SEQTUNE_PARAMS=str(params), OMP_NUM_THREADS="1")
    env.pop("SEQTUNE_API_TOKEN", None)
    env.pop("SEQTUNE_API_TOKEN_FILE", None)
    return subprocess.run([sys.executable, "-c", SERVICE_PROBE, json.dumps(SOURCES)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


IMPORT_PROBE = """
import json, sys
from pathlib import Path
import bentoml
from seqtune.serving.bento import import_champion
r = import_champion(sys.argv[1], params=Path(sys.argv[2]))
m = bentoml.models.get(r.tag)
print(json.dumps({"imported": r.imported, "tag": str(r.tag), "path": str(m.path),
                  "ct2_compute_type": m.info.metadata.get("ct2_compute_type")}))
"""


def _import(params: Path) -> dict:
    """`import_champion(TASK)` in a subprocess (the current MLflow store, BentoML home and cwd):
    BentoML fixes its home at first use in a process, so an in-process import here would leave
    later tests' in-process `bentoml.serve` looking in this test's store."""
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, TASK, str(params)], capture_output=True, text=True,
                          timeout=300, check=False, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bento_import_stores_the_conversion_the_service_serves(champion, params_file, tmp_path, monkeypatch):
    from seqtune.pipeline.register import register_model
    from seqtune.serving.bento import ct2_folder
    from seqtune.tasks import get_task

    monkeypatch.chdir(tmp_path)  # MLflow's artifact folder follows the working directory
    # fp32 torch: what ctranslate2 float32 answers like (auto would be bf16 on a bf16-native CPU).
    serve = {"decoding": "greedy", "answer_vocab": True, "precision": "fp32", "max_new_tokens": MAX_NEW}
    ct2_params = tmp_path / "ct2-params.yaml"  # params_file writes one path: move each away
    shutil.move(params_file({"tasks": [TASK], "serve": {**serve, "runtime": "ctranslate2",
                                                       "ct2_compute_type": "float32"}}), ct2_params)
    torch_params = tmp_path / "torch-params.yaml"
    shutil.move(params_file({"tasks": [TASK], "serve": serve}), torch_params)
    assert register_model(TASK, champion, {get_task(TASK).primary_metric: 0.0}, params=torch_params).promoted
    first = _import(torch_params)
    assert first["imported"] and not any(Path(first["path"]).glob("ct2-*"))

    # The service refuses a ctranslate2 runtime whose model holds no conversion, and says what to run.
    refused = _service(ct2_params)
    assert refused.returncode != 0 and "seqtune bento import" in refused.stderr, refused.stderr[-2000:]

    # Imported again with the runtime set: a new BentoML model of the same champion, converted.
    second = _import(ct2_params)
    assert second["imported"] and second["tag"] != first["tag"]
    assert (ct2_folder(second["path"], "float32") / "model.bin").is_file()
    assert second["ct2_compute_type"] == "float32"
    assert not _import(ct2_params)["imported"]  # it holds the conversion now
    assert not _import(torch_params)["imported"]  # and the torch runtime's folder

    want = [c[0] for c in _torch(champion, answer_vocab=True).generate(SOURCES)]
    served = {}
    for runtime, params in (("ctranslate2", ct2_params), ("torch", torch_params)):
        done = _service(params)
        assert done.returncode == 0, done.stderr[-3000:]
        served[runtime] = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["ctranslate2"] == {"outputs": want, "runtime": "ctranslate2", "precision": "float32",
                                     "answer_vocab": len(set(ANSWER_CHARS)) + 1}
    assert served["torch"]["runtime"] == "torch" and served["torch"]["outputs"] == want
