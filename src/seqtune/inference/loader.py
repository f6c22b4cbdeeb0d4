"""Open a model folder as a generator: the one loader evaluation, the MLflow model, the service,
`seqtune predict` and the bench scripts build their generators with.

    python -c "from seqtune.inference.loader import load_generator; print(load_generator('data/models/smiles2formula').predict(['CCO']))"

Every runtime reads the same things from a folder (`open_model_folder`): its card (task,
prompt format, the answer tokens), its tokenizer, and the answer vocabulary where asked for.
`load_generator` adds the weights (safetensors only, checked: `weights.load_causal_lm`), loaded
in the precision's dtype onto the device; the CTranslate2 runtime adds its conversion instead
(`seqtune.serving.ct2`). A folder without a card (the zero-shot base model) is opened with the
card it is to be taken for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqtune.inference.cards import read_model_card
from seqtune.inference.devices import pick_device, weights_dtype
from seqtune.inference.generator import Generator
from seqtune.inference.weights import load_causal_lm


@dataclass(frozen=True)
class ModelFolder:
    """What a runtime needs from a model folder besides its weights."""

    path: Path
    card: Mapping[str, Any]
    """seqtune.json (or the card given for a folder that has none): task, format, answer_token_ids."""
    tokenizer: Any
    answer_ids: list[int] | None
    """The tokens to limit answers to; None: the full vocabulary (not asked for, or not recorded:
    models trained before the card held an answer vocabulary)."""


def open_model_folder(model_dir: Path | str, *, card: Mapping[str, Any] | None = None,
                      answer_vocab: bool = True) -> ModelFolder:
    """The folder's card (read first: a folder that is no seqtune model fails before anything
    loads), tokenizer and answer vocabulary. `card`: take a folder without seqtune.json for
    this one (`{"task": ..., "format": ...}`)."""
    from transformers import AutoTokenizer

    card = read_model_card(model_dir) if card is None else card
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    answer_ids = card.get("answer_token_ids") if answer_vocab else None
    return ModelFolder(Path(model_dir), card, tokenizer, answer_ids)


def load_generator(model_dir: Path | str, *, card: Mapping[str, Any] | None = None,
                   device: torch.device | str | None = None, precision: str = "auto", answer_vocab: bool = True,
                   **kw) -> Generator:
    """A `Generator` over the model folder. `answer_vocab`: decode with the LM head over the
    tokens the model's training answers used, where its card records them. `precision` as in
    `devices.resolve_precision`; `device` defaults to `devices.pick_device()`; the rest
    (`max_new_tokens`, `batch_size`, `drop_finished`) goes to the Generator."""
    folder = open_model_folder(model_dir, card=card, answer_vocab=answer_vocab)
    device = torch.device(device) if device else pick_device()
    # Loaded in the final dtype: no transient fp32 copy of a model served in bf16.
    model = load_causal_lm(model_dir, dtype=weights_dtype(precision, device)).to(device)
    return Generator(model, folder.tokenizer, task=folder.card["task"], fmt=folder.card["format"],
                     precision=precision, answer_ids=folder.answer_ids, **kw)
