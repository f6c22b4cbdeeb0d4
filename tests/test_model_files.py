"""Corrupt and hostile model folders fail with an error naming the file (issue 14, item 4).

    .venv/bin/python -m pytest -q tests/test_model_files.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from seqtune.inference.cards import MODEL_CARD
from seqtune.inference.loader import load_generator
from seqtune.inference.weights import CorruptModelError, check_weights, load_causal_lm


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path) -> Path:
    """A copy of the tiny model with a model card, free to damage."""
    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / MODEL_CARD).write_text(json.dumps({"task": "smiles2formula", "format": "plain"}))
    return out


def _weights(folder: Path) -> Path:
    (st,) = folder.glob("*.safetensors")
    return st


def test_intact_folder_loads_and_generates(model_dir):
    assert check_weights(model_dir) == [_weights(model_dir)]
    gen = load_generator(model_dir, max_new_tokens=2)
    assert len(gen.predict(["CCO", "c1ccccc1"])) == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_safetensors_named_in_the_error(model_dir, damage):
    st = _weights(model_dir)
    raw = st.read_bytes()
    st.write_bytes({"truncated": raw[: len(raw) * 2 // 3], "garbage": b"\x89PNG\r\n" + bytes(range(256)) * 8,
                    "empty": b""}[damage])
    with pytest.raises(CorruptModelError, match=st.name) as err:
        load_generator(model_dir)
    assert "rebuild" in str(err.value)


def test_pickled_weights_are_refused_not_unpickled(model_dir, monkeypatch):
    """A folder holding only pytorch_model.bin is refused before anything could unpickle it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    _weights(model_dir).unlink()
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called on an untrusted file"))
    with pytest.raises(CorruptModelError, match="pytorch_model.bin.*never unpickles"):
        load_causal_lm(model_dir)


def test_weights_of_another_config_are_a_clear_error(model_dir):
    """A folder whose config.json says another shape than its weights (a checkpoint of
    another model copied in) names the folder instead of loading a wrong model."""
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["hidden_size"] *= 2
    cfg["intermediate_size"] *= 2
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptModelError, match=f"{model_dir}.*do not fit its config.json"):
        load_causal_lm(model_dir)


def test_missing_config_or_weights(model_dir, tmp_path):
    with pytest.raises(CorruptModelError, match="no config.json"):
        check_weights(tmp_path / "nowhere")
    _weights(model_dir).unlink()
    with pytest.raises(CorruptModelError, match="no \\*.safetensors"):
        check_weights(model_dir)


def test_cli_prints_the_error_without_a_traceback(model_dir, capsys):
    """`seqtune` commands turn the error into one line naming the file (exit 2), no traceback."""
    import typer

    from seqtune.cli import _run

    st = _weights(model_dir)
    st.write_bytes(st.read_bytes()[:100])
    with pytest.raises(typer.Exit) as exit_:
        _run(load_generator, model_dir)
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and st.name in err and "Traceback" not in err
