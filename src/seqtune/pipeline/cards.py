"""The base model's card, `data/base_model/base_model.json`: written by the `base_model` stage
(`seqtune.pipeline.base_model`), read by `train` and by the tokenizer loader.

    python -c "from seqtune.pipeline.cards import base_model_card; print(base_model_card())"

A helper module, not a stage: a stage reads another stage's output folder through code like
this, never by importing the other stage (ARCHITECTURE.md). The fine-tuned model's card
(`seqtune.json`) is the inference package's: `seqtune.inference.cards.read_model_card`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqtune import paths

BASE_MODEL_CARD = "base_model.json"
"""File in data/base_model describing where the weights came from."""


def base_model_card(folder: Path = paths.BASE_MODEL) -> dict[str, Any]:
    """The base_model.json of a resolved base model folder (clear error when missing)."""
    card = Path(folder) / BASE_MODEL_CARD
    if not card.exists():
        raise FileNotFoundError(f"{folder} holds no resolved base model: run `seqtune base-model` (or `dvc repro base_model`) first")
    return json.loads(card.read_text())


def lineage_tags(card: dict[str, Any]) -> dict[str, str]:
    """MLflow params naming a warm start's parent (`lineage.*`), from a base model card; empty
    for a base model that is not a registered seqtune model."""
    parent = card.get("parent") or {}
    if not parent:
        return {}
    return {"lineage.parent_model": str(parent.get("model")), "lineage.parent_version": str(parent.get("version")),
            "lineage.parent_run_id": str(parent.get("run_id")), "lineage.root_base_model": str(parent.get("base_model"))}


def warm_start_from(card: dict[str, Any]) -> str | None:
    """`<registered model>/<version>` a warm start continued, None for a fresh base model."""
    parent = card.get("parent") or {}
    return f"{parent['model']}/{parent['version']}" if parent else None
