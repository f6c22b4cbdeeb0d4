"""Low-level MLflow registry helpers shared by the register stage, the registry CLI and the
evaluation stage: versions, aliases and their history, version comparison, content hashes.

    python -c "from seqtune.pipeline.registry_store import content_hash; print(content_hash('data/models/smiles2formula'))"

Every function takes an `MlflowClient` (or uses the active tracking URI); pointing MLflow at
the store (`seqtune.tracking.setup_mlflow`) is the caller's job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqtune import paths
from seqtune.files import file_sha256

log = logging.getLogger(__name__)

HISTORY_TAG = "alias_history"
"""Registered-model tag: JSON list of alias moves {version, previous, at, by, reason}."""
LOGGED_AS_TAG = "logged_as"
"""Version tag: `code` on a version whose model is logged as code (MLflow models from code, no
pickle: seqtune.pipeline.pyfunc_model). Versions registered before that lack it: their model
class is a cloudpickle, which seqtune's loader refuses by default."""
LOGGED_AS_CODE = "code"
RUN_ID_FILE = paths.RUN_ID_FILE
"""File in a model folder holding the MLflow run id of its training."""
# Files that describe a training run rather than the model: excluded from the content hash
# so that the same weights re-registered from a re-run count as the same model.
_NOT_CONTENT = {RUN_ID_FILE}


# ---------------------------------------------------------------------------------------
# versions and aliases


def not_found(e: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(e, MlflowException) and e.error_code == "RESOURCE_DOES_NOT_EXIST"


def get_alias(client, name: str, alias: str):
    """The version holding `alias`, or None (no such model or alias) — without relying on
    the store's error codes, which differ between "no model" and "no alias"."""
    try:
        aliases = client.get_registered_model(name).aliases or {}
    except Exception as e:  # noqa: BLE001
        if not_found(e):
            return None
        raise
    if alias not in aliases:
        return None
    return client.get_model_version(name, str(aliases[alias]))


def versions(client, name: str) -> list:
    # Filter by name in the store and by tags in Python: simple and portable across stores.
    found = client.search_model_versions(f"name='{name}'")
    return sorted(found, key=lambda v: int(v.version))


def get_version(client, name: str, version: int):
    try:
        return client.get_model_version(name, str(version))
    except Exception as e:  # noqa: BLE001
        if not not_found(e):
            raise
    known = [int(v.version) for v in versions(client, name)]
    raise ValueError(
        f"{name} has no version {version}; registered versions: {known or 'none'} "
        "(see `seqtune registry show TASK`)"
    )


def logged_as_code(mv) -> bool:
    """True for a version logged as code (no pickle), by its LOGGED_AS_TAG."""
    return (mv.tags or {}).get(LOGGED_AS_TAG) == LOGGED_AS_CODE


def replaces_pickle(new, old) -> bool:
    """True when `new` is `old`'s model (same content hash) logged as code and `old` is a pickle:
    moving the alias from `old` to `new` changes how the model loads, not what it answers."""
    digest = (new.tags or {}).get("content_hash")
    same = bool(digest) and digest == (old.tags or {}).get("content_hash")
    return same and logged_as_code(new) and not logged_as_code(old)


# ---------------------------------------------------------------------------------------
# alias history


def alias_history(client, name: str) -> list[dict[str, Any]]:
    try:
        tags = client.get_registered_model(name).tags
    except Exception as e:  # noqa: BLE001
        if not_found(e):
            return []
        raise
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def move_alias(client, name: str, alias: str, version: int, *, by: str, reason: str) -> None:
    from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH

    current = get_alias(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    history = alias_history(client, name)
    history.append(
        {
            "version": int(version),
            "previous": int(current.version) if current else None,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "by": by,
            "reason": reason,
        }
    )
    text = json.dumps(history)
    while len(text) > MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH and len(history) > 1:
        history.pop(0)  # keep the newest moves when the tag would overflow the store's limit
        text = json.dumps(history)
    client.set_registered_model_tag(name, HISTORY_TAG, text)
    log.info("%s@%s -> v%s (%s: %s)", name, alias, version, by, reason)


def holders(history: list[dict[str, Any]]) -> list[int]:
    """The undo stack of alias holders: a rollback pops the entry it undid."""
    stack: list[int] = []
    for move in history:
        if move.get("by") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(int(move["version"]))
    return stack


# ---------------------------------------------------------------------------------------
# comparison


def score(mv) -> tuple[str | None, float | None, str | None]:
    """(primary metric name, value, test set) from a version's tags. The test set is the
    test-set hash plus the hash of the items actually scored (`eval_hash`: a different
    `evaluate.n_eval` scores a different prefix of the same test set)."""
    tags = mv.tags or {}
    value = tags.get("primary_metric_value")
    test = tags.get("test_hash")
    if tags.get("eval_hash"):
        test = f"{test}/{tags['eval_hash']}"
    return tags.get("primary_metric"), (float(value) if value not in (None, "") else None), test


def compare(new, old) -> tuple[bool, str]:
    """(new beats old, why) — only on the same test set and the same metric."""
    n_metric, n_val, n_test = score(new)
    o_metric, o_val, o_test = score(old)
    who = f"v{new.version} vs champion v{old.version}"
    if n_test != o_test:
        return False, f"{who}: scored on another test set (test_hash {str(n_test)[:12]} vs {str(o_test)[:12]})"
    if n_metric != o_metric or n_val is None or o_val is None:
        return False, f"{who}: not comparable ({n_metric}={n_val} vs {o_metric}={o_val})"
    if n_val > o_val:
        return True, f"{who}: {n_metric} {n_val:.4f} beats {o_val:.4f}"
    return False, f"{who}: {n_metric} {n_val:.4f} does not beat {o_val:.4f}"


# ---------------------------------------------------------------------------------------
# model folders and runs


def content_hash(model_dir: Path | str) -> str:
    """sha256 over every file of the model folder (relative path + content), minus run_id."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for f in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = f.relative_to(model_dir).as_posix()
        if rel in _NOT_CONTENT:
            continue
        h.update(f"{rel}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric entries of a (nested) metrics dict as {"a.b": value}, for MLflow."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(flat_metrics(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def start_model_run(model_dir: Path | str, *, run_name: str):
    """Resume the training run of `model_dir` (its `run_id` file), else start a new run.

    Call after `setup_mlflow`; use as a context manager (`with start_model_run(...) as run:`)."""
    import mlflow
    from mlflow import MlflowClient

    run_file = Path(model_dir) / RUN_ID_FILE
    if run_file.exists():
        run_id = run_file.read_text().strip()
        try:
            MlflowClient().get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except Exception as e:  # noqa: BLE001
            if not not_found(e):
                raise
            log.warning("training run %s is not in this MLflow store; logging into a new run", run_id)
    else:
        log.warning("%s has no %s file; logging into a new MLflow run", model_dir, RUN_ID_FILE)
    return mlflow.start_run(run_name=run_name)
