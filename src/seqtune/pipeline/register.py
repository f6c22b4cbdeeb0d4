"""Stage `register`: register each evaluated model in MLflow, keep one `champion` per task.

    seqtune register                      # DVC stage `register` (never cached; idempotent)

A model folder is logged as a pyfunc model (from code, no pickle: `pyfunc`) into its training run, registered as
`<register.model_prefix><task>` and tagged with its data/test-set hashes, base model, format,
method, primary metric and a content hash of the folder. The alias (`register.alias`) moves
to a new version only when it beats the current champion on the same test set; every move
is appended to the registered model's `alias_history` tag, which `seqtune registry rollback`
walks back (`registry`). Registering the same folder again (same content hash) returns the
existing version; a version registered as a pickle (before models from code) does not count:
the folder is logged again as code, and the new version takes over the alias when the pickled
one held it.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, EvaluateConfig, RegisterConfig
from seqtune.files import write_json
from seqtune.pipeline import registry
from seqtune.pipeline import registry_store as store

log = logging.getLogger(__name__)

REGISTRY_JSON = paths.DATA / "registry.json"
"""The register stage's output: per task, version, created, promoted, reason, champion."""


@dataclass(frozen=True)
class RegisterResult:
    version: int
    """The registered version holding this model folder."""
    created: bool
    """False when the same content was already registered (nothing was created)."""
    promoted: bool
    """True when the alias moved to `version` in this call."""
    reason: str
    """Why the alias moved or stayed, for people."""
    champion: int | None = None
    """The version holding the alias after this call."""


def _primary(task: str, metrics: dict[str, Any]) -> tuple[str, float]:
    name = metrics.get("primary_metric")
    if not name:
        from seqtune.tasks import get_task

        name = get_task(task).primary_metric
    if name not in metrics:
        raise ValueError(f"metrics for {task} lack the primary metric {name!r}; run `seqtune evaluate {task}` first")
    value = float(metrics[name])
    if math.isnan(value):
        raise ValueError(f"metrics for {task}: {name} is NaN; re-run `seqtune evaluate {task}`")
    return name, value


DECISION_TAG = "alias_decision"
"""Version tag: why the alias moved to this version or stayed (set once, under the lock)."""
# Tags that describe an evaluation rather than the model: a re-evaluation of the same folder
# (e.g. another evaluate.n_eval) updates them on the existing version.
_SCORE_TAGS = ("primary_metric", "primary_metric_value", "test_hash", "eval_hash", "decoding", "n_eval", "real_bands")


def real_bands_tag(metrics: dict[str, Any], metric: str) -> str | None:
    """`metric` on the real molecules by band, compact for a tag and a table cell
    ("3-12: 0.125 (n=50), 13-15: ...", bands in size order); None when the evaluation had no real molecules."""
    real = metrics.get("real") or {}
    bands = sorted(real, key=lambda b: int(b.split("-")[0]))  # metrics/TASK.json sorts its keys as strings
    return ", ".join(f"{b}: {real[b][metric]:.3f} (n={real[b]['n']})" for b in bands if metric in real[b]) or None


def _version_tags(task: str, model_dir: Path, metrics: dict[str, Any]) -> dict[str, str]:
    """The tags a new version of `model_dir` gets (the content hash among them); checks that
    the folder is a `task` model and that the metrics have its primary metric."""
    from seqtune.inference.cards import read_model_card

    card = read_model_card(model_dir)
    if card.get("task") not in (None, task):
        raise ValueError(f"{model_dir} holds a {card['task']!r} model, not {task!r}")
    metric_name, value = _primary(task, metrics)
    tags = {
        "task": task,
        "data_hash": metrics.get("data_hash") or card.get("data_hash"),
        "test_hash": metrics.get("test_hash") or card.get("test_hash"),
        "eval_hash": metrics.get("eval_hash"),
        "base_model": card.get("base_model"),
        "format": card.get("format"),
        "method": card.get("method"),
        "primary_metric": metric_name,
        "primary_metric_value": repr(value),
        "content_hash": store.content_hash(model_dir),
        "decoding": metrics.get("decoding"),
        "n_eval": metrics.get("n"),
        "real_bands": real_bands_tag(metrics, metric_name),
        store.LOGGED_AS_TAG: store.LOGGED_AS_CODE,  # pyfunc.log_model logs from code
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


def _served_config(metrics: dict[str, Any]) -> dict[str, Any]:
    """The logged model_config: generation limits from the evaluation, precision and head."""
    config = {k: metrics[k] for k in ("max_new_tokens", "batch_size") if metrics.get(k) is not None}
    # Logged as `auto` (resolves on the machine that loads it) so a loader can override it:
    # MLflow only lets load-time model_config change keys the logged config has.
    config["precision"] = "auto"
    config["answer_vocab"] = True
    return config


def _upload(mlflow, name: str, model_dir: Path, metrics: dict[str, Any], run_id: str):
    """Log the evaluation's metrics and the model (from code, no pickle) into the active run;
    MLflow's ModelInfo. The slow part: done before taking the lock, so a concurrent register of
    another task's model or a promote never waits for it."""
    from seqtune.pipeline import pyfunc

    mlflow.log_metrics({f"eval.{k}": v for k, v in store.flat_metrics(metrics).items()})
    log.info("%s: uploading the model (run %s)", name, run_id)
    # The served default is the decoding the metrics were measured with.
    return pyfunc.log_model(
        model_dir,
        decoding=str(metrics.get("decoding") or EvaluateConfig().decoding),
        num_beams=int(metrics.get("num_beams") or EvaluateConfig().num_beams),
        model_config=_served_config(metrics),
    )


def _register_uploaded(mlflow, client, name: str, rcfg: RegisterConfig, info, tags: dict[str, str],
                       run_id: str) -> RegisterResult:
    """Register the uploaded model as a new version and decide on the alias. Call holding the
    lock: the duplicate check, the version and the alias move happen under one hold."""
    # Another process may have registered the same content while this one uploaded.
    if (mv := _same_content(client, name, tags["content_hash"])) is not None:
        log.info("%s v%s registered the same content meanwhile; logged model %s stays unregistered",
                 name, mv.version, info.model_uri)
        return _already_registered(client, name, rcfg, mv, tags, locked=True)
    # Tags go in with the version itself, so a crash can't leave an untagged duplicate.
    mv = mlflow.register_model(info.model_uri, name, tags=tags)
    mlflow.set_tag(f"registered.{name}", mv.version)
    version = int(mv.version)
    log.info("registered %s v%d from run %s", name, version, run_id)
    # Compare and move under the same lock: nobody can promote between the two.
    promoted, reason, held = _decide(client, name, version, rcfg.alias)
    return RegisterResult(version, True, promoted, reason, held)


def _already_registered(client, name: str, rcfg: RegisterConfig, mv, tags: dict[str, str], *,
                        locked: bool = False) -> RegisterResult:
    """Idempotent path: the same content is registered; create nothing, refresh its scores.
    A version never decided on (its register was killed after creating it) is decided now; a
    decided one is left alone, so a re-run never undoes a rollback. `locked`: the caller holds
    the registry lock already (it is not reentrant)."""
    stale = {k: tags[k] for k in _SCORE_TAGS if k in tags and (mv.tags or {}).get(k) != tags[k]}
    for k, v in stale.items():
        client.set_model_version_tag(name, mv.version, k, v)
    if _undecided(client, name, mv):
        with nullcontext() if locked else registry.locked(client, name, rcfg, by=f"register {tags.get('task')}"):
            if _undecided(client, name, client.get_model_version(name, mv.version)):
                promoted, why, held = _decide(client, name, int(mv.version), rcfg.alias)
                reason = f"already registered as v{mv.version} (same content), undecided until now: {why}"
                log.info("%s: %s", name, reason)
                return RegisterResult(int(mv.version), False, promoted, reason, held)
    cur = store.get_alias(client, name, rcfg.alias)
    held = int(cur.version) if cur else None
    reason = f"already registered as v{mv.version} (same content)"
    if stale:
        reason += f"; its scores were updated from the new evaluation ({', '.join(sorted(stale))})"
    reason += f"; {rcfg.alias} is v{held}"
    log.info("%s: %s", name, reason)
    return RegisterResult(int(mv.version), False, False, reason, held)


def register_model(
    task: str, model_dir: Path, metrics: dict, *, params: Path = DEFAULT_PARAMS
) -> RegisterResult:
    """Log `model_dir` to MLflow, register it, tag it, and move the alias if it is better."""
    _, rcfg, mcfg = registry.configs(params)
    model_dir = Path(model_dir)
    tags = _version_tags(task, model_dir, metrics)
    name = rcfg.model_prefix + task
    mlflow, client = registry.open_store(mcfg)
    # Fast path without the lock: an idempotent re-run creates nothing (checked again under it).
    if (mv := _same_content(client, name, tags["content_hash"])) is not None:
        return _already_registered(client, name, rcfg, mv, tags)
    with store.start_model_run(model_dir, run_name=f"register-{task}") as run:
        info = _upload(mlflow, name, model_dir, metrics, run.info.run_id)
        with registry.locked(client, name, rcfg, by=f"register {task}"):
            return _register_uploaded(mlflow, client, name, rcfg, info, tags, run.info.run_id)


def _decide(client, name: str, version: int, alias: str) -> tuple[bool, str, int]:
    """Move `alias` to `version` if it beats the holder; record the decision on the version.
    Call holding the lock. (promoted, why, holder after)."""
    current = store.get_alias(client, name, alias)
    mv = client.get_model_version(name, str(version))
    if current is None:
        metric, value, _ = store.score(mv)
        promoted, reason = True, f"v{version} is the first {alias} ({metric} {value:.4f})"
    elif int(current.version) == version:
        promoted, reason = False, f"v{version} already holds {alias}"
    elif store.replaces_pickle(mv, current):
        promoted, reason = True, (f"v{version} is {alias} v{current.version}'s model (same content), "
                                  "logged as code instead of a pickle")
    else:
        promoted, reason = store.compare(mv, current)
    if promoted:
        store.move_alias(client, name, alias, version, by="register", reason=reason)
    # Last: a crash before this line leaves the version undecided, and the next register of
    # the same content decides again instead of skipping it for good.
    client.set_model_version_tag(name, str(version), DECISION_TAG, reason)
    return promoted, reason, version if promoted else int(current.version)  # type: ignore[union-attr]


def _undecided(client, name: str, mv) -> bool:
    """True for a version created by a register that died before deciding on the alias.
    (A version that ever held the alias counts as decided: registered before decisions were
    recorded, or rolled back from — a re-run must not undo that.)"""
    if DECISION_TAG in (mv.tags or {}):
        return False
    return int(mv.version) not in {int(h["version"]) for h in store.alias_history(client, name)}


def _same_content(client, name: str, digest: str):
    """The version logged as code whose content hash is `digest`, or None. A pickled version
    of the same folder (registered before models from code) does not count: registering the
    folder again logs it as code (and `_decide` moves the alias over when it held it)."""
    for mv in store.versions(client, name):
        if (mv.tags or {}).get("content_hash") == digest and store.logged_as_code(mv):
            return mv
    return None


def main(*, params: Path = DEFAULT_PARAMS) -> dict[str, dict[str, Any]]:
    """Stage `register`: register every task's evaluated model; write data/registry.json."""
    import typer

    tasks, _, _ = registry.configs(params)
    summary: dict[str, dict[str, Any]] = {}
    for task in tasks:
        mpath = paths.metrics_path(task)
        if not mpath.exists():
            raise FileNotFoundError(f"{mpath} not found: run `seqtune evaluate {task}` (or `dvc repro`) first")
        res = register_model(task, paths.model_dir(task), json.loads(mpath.read_text()), params=params)
        verb = "moved to" if res.promoted else "stays at"
        typer.echo(f"{task}: v{res.version}{' (new)' if res.created else ''}; champion {verb} v{res.champion} — {res.reason}")
        summary[task] = asdict(res)
    write_json(REGISTRY_JSON, summary)
    return summary
