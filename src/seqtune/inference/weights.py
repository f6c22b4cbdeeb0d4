"""Open a model folder's weights, with an error that names the file when it is missing or corrupt.

    python -c "from seqtune.inference.weights import load_causal_lm; load_causal_lm('data/models/smiles2formula')"

Every model seqtune loads (the base model, a fine-tuned model, a served champion) goes
through `load_causal_lm`: the weights must be safetensors (never a pickle such as
`pytorch_model.bin`, which could run code when unpickled), every `*.safetensors` file must be
complete (its header parses and its data covers the whole file: a truncated copy fails
here, not halfway through a request), and a folder whose config does not match its weights
(e.g. a checkpoint of another model) fails with the folder named instead of a size-mismatch
traceback. `seqtune` users see `CorruptModelError` with what to run to rebuild the folder.
Finding the folder inside a registered MLflow model is the pipeline's
(`seqtune.pipeline.model_files.hf_model_folder`).
"""

from __future__ import annotations

from pathlib import Path

import torch

PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")


class CorruptModelError(ValueError):
    """A model folder that cannot be loaded as it is: missing, pickled or corrupt files."""


def check_weights(folder: Path | str) -> list[Path]:
    """The folder's safetensors files, each checked complete; raises CorruptModelError."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CorruptModelError(f"{folder} is not a model folder (no config.json)")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = [n for n in PICKLED if (folder / n).exists()]
        why = (f"it holds only pickled weights ({', '.join(pickled)}), which seqtune never unpickles: "
               "re-save them with save_pretrained(safe_serialization=True)") if pickled else "it has no *.safetensors weights"
        raise CorruptModelError(f"{folder}: cannot load the model: {why}")
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except (SafetensorError, OSError) as e:
            raise CorruptModelError(f"{f}: not a complete safetensors file ({e}); rebuild it "
                                    "(`dvc repro` the stage that wrote it, or `dvc pull`)") from e
    return files


def load_causal_lm(folder: Path | str, *, dtype: torch.dtype = torch.float32):
    """`AutoModelForCausalLM.from_pretrained(folder)` from safetensors only, after `check_weights`."""
    from transformers import AutoModelForCausalLM

    check_weights(folder)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise CorruptModelError(f"{folder}: its weights do not fit its config.json ({first}); "
                                "the folder mixes files of different models: rebuild it") from e
