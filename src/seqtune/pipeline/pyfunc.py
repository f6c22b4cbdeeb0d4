"""The MLflow model: a pyfunc `PythonModel` that wraps a fine-tuned HF model folder.

    python -c "import mlflow; print(mlflow.pyfunc.load_model('models:/seqtune-smiles2formula@champion').predict(['CCO']))"

The folder (safetensors + tokenizer + seqtune.json) travels as the artifact `hf_model`, and
`predict` goes through `seqtune.pipeline.generation.Generator`, the same code evaluation and the
service use, so the registered model answers exactly like the folder that was scored.
Loading it needs the `seqtune` package importable (the class is pickled by reference; models
registered before the package layout name `seqtune.pyfunc`, an alias of this module's class).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

log = logging.getLogger(__name__)

from seqtune.pipeline.model_files import HF_MODEL_KEY, hf_model_folder  # noqa: E402,F401 (re-exported)

# What loading the model needs. Pinned to the versions installed here; listed explicitly
# because MLflow's inference of requirements imports the model and then fails looking for
# torchvision (DESIGN.md).
_REQUIREMENTS = (
    "mlflow", "torch", "transformers", "tokenizers", "safetensors", "pandas",
    "rdkit", "py2opsin", "openclatura",
)


def pip_requirements() -> list[str]:
    """`pkg==version` for every runtime dependency of the model that is installed."""
    reqs = []
    for pkg in _REQUIREMENTS:
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def signature(default_decoding: str, default_num_beams: int):
    """A string in, a string out; `decoding` and `num_beams` are per-call params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema(
            [
                ParamSpec("decoding", "string", default_decoding),
                ParamSpec("num_beams", "long", default_num_beams),
            ]
        ),
    )


def _sources(model_input: Any) -> list[str]:
    """A list of strings from whatever pyfunc hands over (list, Series, DataFrame)."""
    if isinstance(model_input, pd.DataFrame):
        # A signature turns a plain list into a one-column DataFrame with column 0.
        col = model_input["source"] if "source" in model_input.columns else model_input.iloc[:, 0]
        return [str(x) for x in col.tolist()]
    if isinstance(model_input, pd.Series):
        return [str(x) for x in model_input.tolist()]
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, Sequence) or hasattr(model_input, "tolist"):
        items = model_input.tolist() if hasattr(model_input, "tolist") else list(model_input)
        return [str(x) for x in items]
    raise ValueError(
        f"expected a list of strings or a DataFrame with a 'source' column, got {type(model_input).__name__}"
    )


class SeqtuneModel(mlflow.pyfunc.PythonModel):
    """Generation from the `hf_model` artifact. `model_config` may set `max_new_tokens`,
    `batch_size`, `precision` (auto|bf16|autocast|fp32, `generation.resolve_precision`; a
    loader overrides it with `mlflow.pyfunc.load_model(uri, model_config={"precision": ...})`),
    `answer_vocab` (bool, `Generator.load`);
    per-call `params` may set `decoding` (greedy|beam|verified), `num_beams`."""

    _skip_type_hint_validation = True  # inputs are validated by `_sources`, not by type hints

    def load_context(self, context) -> None:
        from seqtune.pipeline.generation import Generator

        config = dict(context.model_config or {})
        kw = {k: int(config[k]) for k in ("max_new_tokens", "batch_size") if config.get(k) is not None}
        self.generator = Generator.load(context.artifacts[HF_MODEL_KEY], precision=str(config.get("precision", "auto")),
                                        answer_vocab=bool(config.get("answer_vocab", True)), **kw)

    def predict(self, context, model_input, params: Mapping[str, Any] | None = None) -> list[str]:
        # Only pass what was given: the logged signature supplies defaults when loaded via
        # MLflow; otherwise Generator.predict's own defaults apply.
        kw: dict[str, Any] = {}
        if params and params.get("decoding"):
            kw["decoding"] = str(params["decoding"])
        if params and params.get("num_beams"):
            kw["num_beams"] = int(params["num_beams"])
        preds = self.generator.predict(_sources(model_input), **kw)
        return [p.output for p in preds]


def log_model(
    model_dir: Path | str,
    *,
    name: str = "model",
    decoding: str = "greedy",
    num_beams: int = 4,
    model_config: Mapping[str, Any] | None = None,
):
    """Log `model_dir` as a pyfunc model into the active run; returns MLflow's ModelInfo."""
    with warnings.catch_warnings():
        # An input example would make MLflow load the model and generate at log time (slow for
        # a real model); the explicit signature already documents the input.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=SeqtuneModel(),
            artifacts={HF_MODEL_KEY: str(Path(model_dir).resolve())},
            pip_requirements=pip_requirements(),
            signature=signature(decoding, num_beams),
            model_config=dict(model_config or {}),
        )
