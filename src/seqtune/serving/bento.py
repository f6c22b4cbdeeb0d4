"""Import every task's MLflow champion into the BentoML model store (what the service serves).

    seqtune bento import          # then: make serve  /  make bento

For each task in params.yaml, `models:/<prefix><task>@<alias>` is downloaded from MLflow and
its HF model folder (the pyfunc artifact `hf_model`) is copied into a BentoML model named like
the registered model, with labels and metadata saying where it came from (MLflow version,
run, base model, data/test hashes, metrics). The service loads that folder with
`load_generator` (seqtune.inference) and never imports MLflow, so a bento (and its container) needs no registry.
The newest BentoML model of a name is what the service serves: importing a champion that is
already the newest import is a no-op, and a rollback re-imports the older version on top.
With `serve.runtime: ctranslate2` the import also converts the model (`seqtune.serving.ct2`,
weights in `serve.ct2_compute_type`) into `ct2-<compute type>/` beside `hf/`, so a bento and
its container carry it; a newest import without that conversion is imported again with it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtune.config import DEFAULT_PARAMS, load_params

log = logging.getLogger(__name__)

HF_SUBDIR = "hf"
"""Folder inside a BentoML model holding the HF model (safetensors, tokenizer, seqtune.json)."""


@dataclass(frozen=True)
class ImportResult:
    task: str
    tag: str
    """BentoML model tag, e.g. `seqtune-smiles2iupac:6kz3...`."""
    mlflow_version: str
    imported: bool
    """False when the newest BentoML model already is this champion."""
    ct2_compute_type: str | None = None
    """The ctranslate2 conversion the served model holds (serve.runtime: ctranslate2), else None."""


def bento_model_name(task: str, *, params: Path | str = DEFAULT_PARAMS) -> str:
    """BentoML model name of `task`: the same as its MLflow registered model name."""
    return load_params(params).register.model_prefix + task


def model_folder(bento_model: Any) -> Path:
    """The HF model folder inside a stored BentoML model."""
    return Path(bento_model.path) / HF_SUBDIR


def ct2_folder(bento_model_path: Path | str, compute_type: str) -> Path:
    """The CTranslate2 conversion in `compute_type` inside a stored BentoML model (its path)."""
    return Path(bento_model_path) / f"ct2-{compute_type}"


def _eval_metrics(client, run_id: str | None) -> dict[str, float]:
    """The evaluation metrics logged into the champion's run (`eval.` prefix dropped)."""
    if not run_id:
        return {}
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception as e:  # noqa: BLE001 — metadata is informative; a missing run must not block
        log.warning("run %s unavailable (%s): importing without metrics", run_id, e)
        return {}
    return {k[len("eval.") :]: float(v) for k, v in sorted(metrics.items()) if k.startswith("eval.")}


def _newest(name: str):
    """The newest BentoML model called `name`, or None."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{name}:latest")
    except NotFound:
        return None


def import_champion(task: str, *, params: Path | str = DEFAULT_PARAMS) -> ImportResult:
    """Copy `task`'s champion into the BentoML store (no-op when it is already the newest)."""
    import bentoml
    import mlflow
    from mlflow import MlflowClient

    from seqtune.pipeline import registry
    from seqtune.inference.cards import read_model_card
    from seqtune.pipeline.model_files import hf_model_folder

    uri = registry.champion_uri(task, params=params)  # RuntimeError with a hint when none
    mv = registry.champion(task, params=params)
    rname = registry.model_name(task, params=params)
    name = bento_model_name(task, params=params)
    tags = dict(mv.tags or {})
    labels = {
        "task": task,
        "mlflow_model": rname,
        "mlflow_version": str(mv.version),
        "content_hash": tags.get("content_hash", ""),
        "base_model": tags.get("base_model", ""),
    }
    serve = load_params(params).serve
    ct2 = serve.ct2_compute_type if serve.runtime == "ctranslate2" else None
    current = _newest(name)
    if (current is not None and all(current.info.labels.get(k) == v for k, v in labels.items())
            and (ct2 is None or (ct2_folder(current.path, ct2) / "model.bin").is_file())):
        log.debug("%s: %s v%s already imported as %s", task, rname, mv.version, current.tag)
        return ImportResult(task, str(current.tag), str(mv.version), False, ct2)

    client = MlflowClient()  # registry.champion() pointed mlflow at the configured store
    metadata = {
        "task": task,
        "source": uri,
        "mlflow_model": rname,
        "mlflow_version": str(mv.version),
        "run_id": mv.run_id or "",
        "tracking_uri": mlflow.get_tracking_uri(),
        "base_model": tags.get("base_model", ""),
        "format": tags.get("format", ""),
        "method": tags.get("method", ""),
        "data_hash": tags.get("data_hash", ""),
        "test_hash": tags.get("test_hash", ""),
        "content_hash": tags.get("content_hash", ""),
        "decoding": tags.get("decoding", ""),
        "primary_metric": tags.get("primary_metric", ""),
        "metrics": _eval_metrics(client, mv.run_id),
        "ct2_compute_type": ct2 or "",  # the ctranslate2 conversion it holds ("": none)
    }
    with tempfile.TemporaryDirectory(prefix=f"seqtune-import-{task}-") as tmp:
        log.info("%s: downloading %s (v%s)", task, uri, mv.version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{rname}/{mv.version}", dst_path=tmp))
        folder = hf_model_folder(local)
        card = read_model_card(folder)  # a clear error if the artifact is not a seqtune model
        if card.get("task") not in (None, task):
            raise ValueError(f"{uri} holds a {card['task']!r} model, not {task!r}; re-register it")
        with bentoml.models.create(name, labels=labels, metadata=metadata) as bm:
            shutil.copytree(folder, model_folder(bm))
            if ct2 is not None:
                from seqtune.serving.ct2 import convert

                log.info("%s: converting to ctranslate2 (%s)", task, ct2)
                convert(model_folder(bm), ct2_folder(bm.path, ct2), ct2)  # an error here stores nothing
    log.debug("%s: imported %s v%s as %s", task, rname, mv.version, bm.tag)
    return ImportResult(task, str(bm.tag), str(mv.version), True, ct2)


def import_champions(*, params: Path = DEFAULT_PARAMS) -> list[ImportResult]:
    """`seqtune bento import`: import every task's champion (checks all exist first)."""
    import typer

    from seqtune.pipeline import registry

    p = load_params(params)
    missing = [t for t in p.tasks if registry.champion(t, params=params) is None]
    if missing:
        raise RuntimeError(
            f"no {p.register.alias} in MLflow for {', '.join(missing)}: run `dvc repro` (or "
            "`seqtune register`), or pick a version with `seqtune registry promote TASK VERSION`"
        )
    results = [import_champion(t, params=params) for t in p.tasks]
    for r in results:
        what = "imported as" if r.imported else "already imported as"
        ct2 = f" (with its ctranslate2 {r.ct2_compute_type} conversion)" if r.ct2_compute_type else ""
        typer.echo(f"{r.task}: {p.register.model_prefix}{r.task} v{r.mlflow_version} {what} {r.tag}{ct2}")
    return results
