"""The fine-tuned model's card, `seqtune.json`: written by the `train` stage into every model
folder, read by everything that loads one (the generator's loader, evaluation, `bento import`).

    python -c "from seqtune.inference.cards import read_model_card; print(read_model_card('data/models/smiles2formula'))"

It records the task and prompt format the model was trained for, its base model, the data's
hashes and the tokens its answers used (`answer_token_ids`, the answer head's rows). The base
model's own card (`base_model.json`) is the pipeline's: `seqtune.pipeline.cards`.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_CARD = "seqtune.json"
"""File in every fine-tuned model folder recording task, format and base model."""


def read_model_card(model_dir: Path | str) -> dict:
    """The folder's seqtune.json; FileNotFoundError naming what to run when it has none."""
    path = Path(model_dir) / MODEL_CARD
    if not path.exists():
        raise FileNotFoundError(
            f"{model_dir} is not a seqtune model folder (no {MODEL_CARD}); "
            "train one with `seqtune train TASK` or `dvc repro`"
        )
    return json.loads(path.read_text())
