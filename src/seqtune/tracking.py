"""Where MLflow lives: one absolute tracking URI for every stage, CLI and test.

    python -c "from seqtune.tracking import tracking_uri; print(tracking_uri())"

Default store: `sqlite:///<repo>/mlflow.db` with artifacts in `<repo>/mlartifacts`, nothing
to start. `dvc exp run --temp/--queue` runs stages in a copy under `<repo>/.dvc/tmp/exps/`,
where a relative `sqlite:///mlflow.db` would be a new, empty store; so the repository root
is found from the path, and the URI is always made absolute.
"""

from __future__ import annotations

import os
from pathlib import Path

_EXP_TMP = os.path.join(".dvc", "tmp", "exps")

RESUMED_TAG = "seqtune.resumed_from_step"
"""Tag of a run continued from a checkpoint: the steps it resumed at, comma-separated. Set by
the train stage, read by the experiments (report, verdicts)."""


def repo_root(start: Path | str | None = None) -> Path:
    """The user's repository root, also from inside a DVC experiment's temp copy."""
    start = Path(start or os.getcwd()).resolve()
    s = str(start)
    marker = os.sep + _EXP_TMP + os.sep
    if marker in s + os.sep:
        return Path(s[: (s + os.sep).index(marker)])
    for p in (start, *start.parents):
        if (p / "dvc.yaml").exists() or (p / ".git").exists():
            return p
    return start


def tracking_uri(configured: str | None = None, root: Path | str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else `configured`, else the repo's sqlite store; always absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    base = repo_root(root)
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    if "://" not in uri:  # a bare folder path: a file store
        return str((base / uri).resolve())
    return uri


def artifact_location(uri: str) -> str | None:
    """Artifact folder for a new experiment: `mlartifacts/` beside a sqlite store's file, so
    a store and its artifacts always travel together (None: the server decides)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def setup_mlflow(configured: str | None = None, experiment: str = "seqtune"):
    """Point mlflow at the store and select (creating if needed) the experiment; returns mlflow."""
    import mlflow

    uri = tracking_uri(configured)
    mlflow.set_tracking_uri(uri)
    try:
        if mlflow.get_experiment_by_name(experiment) is None:
            try:
                mlflow.create_experiment(experiment, artifact_location=artifact_location(uri))
            except Exception:
                # Another process (a parallel stage, a teammate) created it in between: the
                # store's unique name makes one of us fail, and that one uses theirs.
                if mlflow.get_experiment_by_name(experiment) is None:
                    raise
        mlflow.set_experiment(experiment)
    except Exception as e:  # noqa: BLE001 — any store failure becomes one actionable message
        raise RuntimeError(
            f"cannot open the MLflow store at {uri}: {e}\n"
            "Check MLFLOW_TRACKING_URI / params.yaml mlflow.tracking_uri, or delete a corrupt mlflow.db."
        ) from e
    return mlflow
