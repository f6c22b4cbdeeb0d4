"""The MLflow model: a pyfunc `PythonModel` that wraps a fine-tuned HF model folder.

    python -c "import mlflow; print(mlflow.pyfunc.load_model('models:/seqtune-smiles2formula@champion').predict(['CCO']))"

The folder (safetensors + tokenizer + seqtune.json) travels as the artifact `hf_model`, is
opened by `seqtune.inference.loader.load_generator` and `predict` goes through its
`Generator.predict`, the same code evaluation and the service use (the fair-decoding rule
included: `verified` asked of a task whose check is the rule-based answer decodes greedy), so
the registered model answers exactly like the folder that was scored.

The model is logged as code (MLflow "models from code"), never pickled: the version holds
`pyfunc_model.py` (MODEL_CODE), which MLflow runs on load and which names `SeqtuneModel` from
the installed `seqtune` package. Versions registered before that hold a cloudpickle of the
class (by reference; those from before the package layout name `seqtune.pyfunc`, an alias of
this module's class). `load_model` is seqtune's own loader (`seqtune predict` without --url):
it refuses such a pickle unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true is set, and any
version whose code is not MODEL_CODE (docs/security.md).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

log = logging.getLogger(__name__)

from seqtune.pipeline.model_files import HF_MODEL_KEY, hf_model_folder  # noqa: E402,F401 (re-exported)

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
"""The models-from-code file logged as `python_model`: MLflow copies it into each version and runs it on load."""
ALLOW_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
"""MLflow's own switch (default true there); `load_model` loads a pickled version only when it is set to true."""

# What loading the model needs. Pinned to the versions installed here; listed explicitly
# because MLflow's inference of requirements imports the model and then fails looking for
# torchvision, which the CPU torch build here does not have.
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
    `batch_size`, `precision` (auto|bf16|autocast|fp32, `devices.resolve_precision`; a
    loader overrides it with `mlflow.pyfunc.load_model(uri, model_config={"precision": ...})`),
    `answer_vocab` (bool, `load_generator`);
    per-call `params` may set `decoding` (greedy|beam|verified, verified only where it is
    fair: `Generator.predict`), `num_beams`."""

    _skip_type_hint_validation = True  # inputs are validated by `_sources`, not by type hints

    def load_context(self, context) -> None:
        from seqtune.inference.loader import load_generator

        config = dict(context.model_config or {})
        kw = {k: int(config[k]) for k in ("max_new_tokens", "batch_size") if config.get(k) is not None}
        self.generator = load_generator(context.artifacts[HF_MODEL_KEY], precision=str(config.get("precision", "auto")),
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
    """Log `model_dir` as a pyfunc model (from code: MODEL_CODE, no pickle) into the active
    run; returns MLflow's ModelInfo."""
    with warnings.catch_warnings():
        # An input example would make MLflow load the model and generate at log time (slow for
        # a real model); the explicit signature already documents the input.
        warnings.filterwarnings("ignore", message=".*input example was not provided.*")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODEL_CODE),
            artifacts={HF_MODEL_KEY: str(Path(model_dir).resolve())},
            pip_requirements=pip_requirements(),
            signature=signature(decoding, num_beams),
            model_config=dict(model_config or {}),
        )


CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
"""MLmodel's `loader_module` for a model from code (PICKLE_LOADER: a cloudpickled PythonModel)."""
PICKLE_LOADER = "mlflow.pyfunc.model"


def _pyfunc_flavor(mlflow_model_dir: Path | str) -> dict[str, Any]:
    import yaml

    meta = yaml.safe_load((Path(mlflow_model_dir) / "MLmodel").read_text()) or {}
    return meta.get("flavors", {}).get("python_function", {}) or {}


def pickled_class(mlflow_model_dir: Path | str) -> str | None:
    """The pickle a downloaded pyfunc model loads its class from (`python_model.pkl` for
    versions registered before models from code), or None when it is logged as code."""
    flavor = _pyfunc_flavor(mlflow_model_dir)
    if flavor.get("model_code_path") or flavor.get("loader_module") != PICKLE_LOADER:
        return None
    return str(flavor.get("python_model") or "python_model.pkl")


def _code(text: str) -> str:
    """A module's code, its docstring aside: a prose edit of MODEL_CODE keeps old versions loadable."""
    import ast

    body = ast.parse(text).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return ast.dump(ast.Module(body=body, type_ignores=[]))


def foreign_code(mlflow_model_dir: Path | str) -> str | None:
    """Why loading a downloaded pyfunc model would run code other than seqtune's own, or None:
    seqtune's versions run MODEL_CODE (the same code, docstring aside) through MLflow's
    code-model loader and ship nothing for sys.path."""
    flavor = _pyfunc_flavor(mlflow_model_dir)
    if flavor.get("loader_module") != CODE_LOADER:
        return f"its MLmodel loads it with {flavor.get('loader_module')!r}, not {CODE_LOADER!r}"
    if flavor.get("code"):
        return f"it ships code that MLflow puts on sys.path ({flavor['code']!r})"
    name = Path(str(flavor.get("model_code_path") or "")).name
    code = Path(mlflow_model_dir) / name
    if not name or not code.is_file():
        return f"its model code file {name or '(none named)'} is missing"
    try:
        same = _code(code.read_bytes().decode()) == _code(MODEL_CODE.read_text())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        same = False
    return None if same else f"its {name} is not seqtune's {MODEL_CODE.name} (src/seqtune/pipeline)"


def _pickle_allowed() -> bool:
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    # Explicitly set only: MLflow's default (true) is not a decision to unpickle the registry.
    return MLFLOW_ALLOW_PICKLE_DESERIALIZATION.is_set() and MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get()


def check_loadable(uri: str, mlflow_model_dir: Path | str) -> None:
    """RuntimeError unless loading the downloaded version `uri` runs only seqtune's code: its
    pickle is refused unless ALLOW_PICKLE_ENV is true, any other code always."""
    pickle_file = pickled_class(mlflow_model_dir)
    if pickle_file is not None:
        if _pickle_allowed():
            return
        raise RuntimeError(
            f"{uri} holds a pickled model class ({pickle_file}: registered before seqtune logged models "
            "as code), and seqtune does not unpickle what the registry holds. Register it again as code: "
            "`seqtune register` logs data/models/TASK as code, and when that folder is this champion's "
            "model the new version takes over the alias. Or, if you trust everyone who can write this "
            f"registry, load it anyway with {ALLOW_PICKLE_ENV}=true (docs/security.md)."
        )
    why = foreign_code(mlflow_model_dir)
    if why is not None:
        raise RuntimeError(
            f"refusing to load {uri}: {why}, so loading it would run code from the registry. seqtune "
            "loads only versions that run its own model code, as `seqtune register` logs them; this one was "
            f"changed or logged otherwise (ask who can write the registry). Read it with `mlflow artifacts "
            f"download -u {uri}`; mlflow.pyfunc.load_model() would run it as it is (docs/security.md)."
        )


def load_model(uri: str, *, model_config: Mapping[str, Any] | None = None):
    """`mlflow.pyfunc.load_model(uri)` for seqtune's versions: downloads once, checks that copy
    (`check_loadable`), loads it. The files checked are the files loaded: nothing can be
    swapped in between."""
    with tempfile.TemporaryDirectory(prefix="seqtune-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        check_loadable(uri, local)
        # Loaded into memory by load_context (load_generator): the download can go afterwards.
        return mlflow.pyfunc.load_model(local, model_config=dict(model_config or {}))
