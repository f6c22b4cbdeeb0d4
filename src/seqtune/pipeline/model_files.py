"""Find the model folder inside a registered MLflow model: the `hf_model` artifact that
`seqtune bento import` serves and a warm start (`base_model.name: models:/...`) trains from.

    python -c "from seqtune.pipeline.model_files import hf_model_folder; help(hf_model_folder)"

Opening the folder's weights (safetensors only, each file checked complete) is the inference
package's: `seqtune.inference.weights.load_causal_lm`, which every model seqtune loads goes
through.
"""

from __future__ import annotations

from pathlib import Path

HF_MODEL_KEY = "hf_model"
"""Artifact key of the HF model folder inside a logged seqtune MLflow model."""


def hf_model_folder(mlflow_model_dir: Path) -> Path:
    """The `hf_model` artifact folder inside a downloaded pyfunc model (read from MLmodel):
    what `seqtune bento import` serves and a warm start (`base_model.name: models:/...`) trains from."""
    import yaml

    mlmodel = Path(mlflow_model_dir) / "MLmodel"
    if not mlmodel.exists():
        raise FileNotFoundError(f"{mlflow_model_dir} is not an MLflow model (no MLmodel file)")
    meta = yaml.safe_load(mlmodel.read_text()) or {}
    artifacts = meta.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    entry = artifacts.get(HF_MODEL_KEY)
    if not entry:
        raise ValueError(
            f"the registered model has no '{HF_MODEL_KEY}' artifact: it was not logged by "
            "`seqtune register`; register the model folder again with `seqtune register`"
        )
    folder = Path(mlflow_model_dir) / (entry["path"] if isinstance(entry, dict) else str(entry))
    if not folder.is_dir():
        raise FileNotFoundError(f"artifact {HF_MODEL_KEY} missing from the download at {folder}")
    return folder
