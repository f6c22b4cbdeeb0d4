"""The MLflow registry's verbs: a task's champion (what serving loads), promote, roll back.

    seqtune registry list | show TASK | promote TASK VERSION [--force] | rollback TASK

Serving (`serving.bento`, `serving.predict`) and the CLI (`seqtune.cli`, which draws the
`list` and `show` tables) use it; the register stage (`register`) opens the store and takes
the per-model lock through it. A version moves into
the champion alias (`register.alias`) only under the registry lock (`registry_lock`), and
every move is appended to the registered model's `alias_history` tag, which `rollback` walks
back.
"""

from __future__ import annotations

from pathlib import Path

from seqtune.config import DEFAULT_PARAMS, MlflowConfig, RegisterConfig, load_params
from seqtune.pipeline import registry_store as store
from seqtune.pipeline.registry_lock import registry_lock
from seqtune.tracking import setup_mlflow

# ---------------------------------------------------------------------------------------
# store access


def configs(params: Path | str) -> tuple[list[str], RegisterConfig, MlflowConfig]:
    """(tasks, register section, mlflow section) of `params`."""
    p = load_params(params)
    return p.tasks, p.register, p.mlflow


def open_store(mcfg: MlflowConfig):
    """(mlflow, MlflowClient) pointed at the configured store."""
    from mlflow import MlflowClient

    mlflow = setup_mlflow(mcfg.tracking_uri, mcfg.experiment)  # RuntimeError with a hint on failure
    return mlflow, MlflowClient()


def model_name(task: str, *, params: Path | str = DEFAULT_PARAMS) -> str:
    """Registered model name of `task`, e.g. `seqtune-smiles2iupac`."""
    return load_params(params).register.model_prefix + task


def champion(task: str, *, params: Path | str = DEFAULT_PARAMS):
    """The MLflow ModelVersion holding the champion alias of `task`, or None."""
    _, rcfg, mcfg = configs(params)
    _, client = open_store(mcfg)
    return store.get_alias(client, rcfg.model_prefix + task, rcfg.alias)


def champion_uri(task: str, *, params: Path | str = DEFAULT_PARAMS) -> str:
    """`models:/<name>@<alias>` of `task`'s champion; RuntimeError when there is none yet."""
    _, rcfg, _ = configs(params)
    if champion(task, params=params) is None:
        raise RuntimeError(
            f"no {rcfg.alias} for {rcfg.model_prefix}{task} yet: run `dvc repro` (or `seqtune train {task}`, "
            f"`seqtune evaluate {task}`, `seqtune register`) first"
        )
    return f"models:/{rcfg.model_prefix}{task}@{rcfg.alias}"


def locked(client, name: str, rcfg: RegisterConfig, *, by: str):
    """The registry lock of `name` (see registry_lock) with the waits from params.yaml."""
    return registry_lock(client, name, by=by, wait_s=rcfg.lock_wait_s, stale_s=rcfg.lock_stale_s)


# ---------------------------------------------------------------------------------------
# registry verbs


def promote(task: str, version: int, *, force: bool = False, params: Path | str = DEFAULT_PARAMS) -> str:
    """Move the alias to `version`; refuses (ValueError) a worse or incomparable one unless `force`."""
    _, rcfg, mcfg = configs(params)
    _, client = open_store(mcfg)
    name = rcfg.model_prefix + task
    with locked(client, name, rcfg, by=f"promote {task} {version}"):
        return _promote_locked(client, name, task, int(version), rcfg.alias, force)


def _promote_locked(client, name: str, task: str, version: int, alias: str, force: bool) -> str:
    target = store.get_version(client, name, version)
    current = store.get_alias(client, name, alias)
    if current is not None and int(current.version) == int(version):
        return f"v{version} already holds {alias}"
    by = "promote"
    if current is None:
        reason = f"promoted v{version} (no {alias} before)"
    else:
        _, why = store.compare(target, current)
        t_metric, t_val, t_test = store.score(target)
        c_metric, c_val, c_test = store.score(current)
        # By hand, an equal score is enough (a person may prefer the newer model); worse or
        # scored on another test set needs --force.
        ok = t_test == c_test and t_metric == c_metric and t_val is not None and c_val is not None and t_val >= c_val
        if not ok and not force:
            raise ValueError(
                f"refusing to promote {name} v{version}: {why}. "
                f"Re-run with `seqtune registry promote {task} {version} --force` to promote anyway."
            )
        if not ok:
            by = "promote --force"
        reason = f"promoted by hand{' (forced)' if not ok else ''}: {why}"
    store.move_alias(client, name, alias, int(version), by=by, reason=reason)
    return reason


def rollback(task: str, *, params: Path | str = DEFAULT_PARAMS) -> int:
    """Move the alias back to the version that held it before; returns that version."""
    _, rcfg, mcfg = configs(params)
    _, client = open_store(mcfg)
    name = rcfg.model_prefix + task
    with locked(client, name, rcfg, by=f"rollback {task}"):
        stack = store.holders(store.alias_history(client, name))
        if len(stack) < 2:
            raise RuntimeError(
                f"nothing to roll back for {name}: the {rcfg.alias} alias has no earlier holder "
                "(see `seqtune registry show TASK`)"
            )
        current, target = stack[-1], stack[-2]
        store.get_version(client, name, target)  # a clear error if that version was deleted
        store.move_alias(client, name, rcfg.alias, target, by="rollback", reason=f"rolled back from v{current}")
    return target
