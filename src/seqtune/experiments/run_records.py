"""Run records: the evidence of a tracked run as one JSON file that lives in git.

    seqtune report          # writes reports/runs/<task>-<run id>.json for every run it used

The MLflow store (`mlflow.db`, `mlartifacts/`) is a local output, never committed: on a new
machine, or after `make clean`, the runs behind a committed report are gone, and a sweep
point added later could not be compared with them. So the report keeps what it needs of each
run it used: the run's row (params, tags, metrics, as `mlflow.search_runs` gives them), its
per-item predictions and scores, and its per-epoch validation curve. `seqtune report` reads
these records beside the store, so it regenerates from a fresh clone, and a new run of one
point is compared item by item with the recorded runs of the others (same test items).
A record of a run the store also holds is superseded by the store's copy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from seqtune.files import write_text

RECORD_COLUMN = "record"
"""Column of `collect_runs()` rows read from a record: the record's path (absent or NaN for
rows from the MLflow store)."""
_KEEP = ("params.", "metrics.", "tags.")
_SKIP_TAGS = ("tags.mlflow.",)  # MLflow's own bookkeeping (source, user, model history)


def present(value: Any) -> bool:
    """Whether a cell of `collect_runs()` holds a value (pandas marks an absent one NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def record_path(folder: Path | str, run_id: str, task: str) -> Path:
    return Path(folder) / f"{task}-{run_id}.json"


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a DataFrame cell (NaN means "absent" and is dropped by the caller)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def write_record(folder: Path | str, ev) -> Path:
    """Write `ev` (a `seqtune.experiments.evidence.RunEvidence`) as a record; returns its path."""
    row = {k: _plain(v) for k, v in dict(ev.row).items()
           if (k in ("run_id", "start_time") or k.startswith(_KEEP)) and not k.startswith(_SKIP_TAGS) and present(v)}
    record = {
        "run_id": ev.run_id,
        "task": ev.task,
        "row": dict(sorted(row.items())),
        "history": {m: [[step, value] for step, value in sorted(curve.items())] for m, curve in sorted(ev.history.items())},
        "items": ev.items,
    }
    path = record_path(folder, ev.run_id, ev.task)
    # One item per line: a rerun that changes one prediction changes one line of the diff.
    lines = [json.dumps({k: v for k, v in record.items() if k != "items"}, sort_keys=True)[:-1] + ', "items": [']
    lines += [json.dumps(it, sort_keys=True) + ("," if i < len(ev.items) - 1 else "") for i, it in enumerate(ev.items)]
    write_text(path, "\n".join(lines) + "\n]}\n")
    return path


def read_record(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        record["row"]["run_id"], record["task"]  # noqa: B018 — the keys every record must have
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a seqtune run record ({e}); delete it or restore it from git") from None
    return record


def records_frame(folder: Path | str):
    """Every record in `folder` as rows in `collect_runs()` form (plus RECORD_COLUMN), or None."""
    import pandas as pd

    folder = Path(folder)
    rows = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        rec = read_record(path)
        rows.append({**rec["row"], RECORD_COLUMN: str(path)})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    df["start_time"] = pd.to_datetime(df["start_time"], utc=True, format="ISO8601")
    return df


def merge_runs(store, records):
    """The store's runs plus the recorded runs it lacks, newest first (one row per run and
    task: a record holds one task of a run, and so does a training run)."""
    import pandas as pd

    frames = [f for f in (store, records) if f is not None and not f.empty]
    if not frames:
        return store if store is not None else pd.DataFrame()
    if len(frames) == 2:
        records = records[~records["run_id"].isin(set(store["run_id"]))]
        frames = [store, records] if not records.empty else [store]
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return merged.sort_values("start_time", ascending=False, kind="stable").reset_index(drop=True)


def load_from_record(path: Path | str) -> tuple[list[dict[str, Any]], dict[str, dict[int, float]]]:
    """(per-item predictions and scores, per-epoch curves) of a recorded run."""
    rec = read_record(path)
    history = {m: {int(step): float(v) for step, v in points} for m, points in rec.get("history", {}).items()}
    return rec["items"], history
