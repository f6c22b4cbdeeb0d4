"""Tracked runs: which MLflow training run ran a given configuration.

    python -c "from seqtune.experiments.runs import collect_runs; print(collect_runs()[['run_id', 'tags.seqtune.task']])"

A sweep point is a whole configuration (params.yaml plus its overrides), so a run matches it
only when every setting that can change a result is equal: the molecules, data, base_model
and train sections as the training logged them (params), and the evaluation settings as the
evaluation tagged them. Matching on the overrides alone is not enough: a run that differs in
a key the point does not mention (another format, say) would be taken for it. Bookkeeping
keys (worker counts, logging and checkpoint intervals) never decide a match. A key a run did
not log because its code predates the key counts as the value every run before the key ran
with, from the dated table `BEFORE_KEY`; never from the code's defaults, which follow
params.yaml and move with it. A key missing from a run and from the table matches nothing.
"""

from __future__ import annotations

from pathlib import Path

from seqtune.config import DEFAULT_PARAMS, Params, flatten, load_params
from seqtune.experiments.run_records import merge_runs, present, records_frame
from seqtune.tasks import get_task

MATCH_SECTIONS = ("molecules", "data", "base_model", "train")
"""Sections whose every key (but bookkeeping) must match, compared as logged params."""
EVAL_KEYS = ("n_eval", "decoding", "num_beams", "max_new_tokens")
"""Evaluation settings that change the scores, compared as the `evaluate.*` tags."""
BOOKKEEPING = frozenset({"molecules.workers", "data.workers", "data.chunk_size", "train.logging_steps", "train.save_steps"})
"""Keys that cannot change a result."""


BEFORE_KEY: dict[str, tuple[str, str]] = {
    # key: (the day it appeared, the value every run before then ran with, as logged)
    "molecules.fragments": ("2026-12-02", "none"),
    # before it, the LM head ran on every position: the same loss and gradients, more compute
    "train.completion_only_logits": ("2026-12-02", "True"),
    "molecules.max_record_chars": ("2026-12-03", "2000"),  # no record read then was longer
    "data.sample": ("2026-12-03", "hash"),
    "data.smiles_variants": ("2026-12-04", "1"),
    "molecules.split_level": ("2026-12-07", "fragment"),
    "molecules.val_fraction": ("2026-12-07", "0.0"),
    # no validation split then, so the count of its examples changed nothing
    "data.n_val": ("2026-12-07", "200"),
    "molecules.simple_organics": ("2026-12-07", "0"),
    "molecules.simple_organics_seed": ("2026-12-07", "0"),
    "train.freeze_layers": ("2026-12-08", "0"),  # every layer trained before it
}
"""What a run whose code predates a key ran as. A new result-changing key needs an entry here
(tests/test_sweeps.py checks every committed run record against it)."""


def signature(p: Params) -> dict[str, str]:
    """The columns (and values) that a run of configuration `p` has in `collect_runs()`."""
    logged = flatten({s: getattr(p, s).model_dump() for s in MATCH_SECTIONS})
    sig = {f"params.{k}": v for k, v in logged.items() if k not in BOOKKEEPING}
    sig |= {f"tags.evaluate.{k}": str(getattr(p.evaluate, k)) for k in EVAL_KEYS}
    return sig


def _key_defaults() -> dict[str, str]:
    """`BEFORE_KEY` as signature columns: what a run whose code lacked a key ran as."""
    return {f"params.{k}": v for k, (_, v) in BEFORE_KEY.items()}


def _same(row, col: str, value: str, defaults: dict[str, str]) -> bool:
    if present(row.get(col)):
        return str(row.get(col)) == value
    return defaults.get(col) == value


def collect_runs(params: Path | str | Params = DEFAULT_PARAMS, records: Path | str | None = None):
    """Every training run of the experiment, newest first, with its params, tags and
    metrics (a pandas DataFrame in `mlflow.search_runs` form); with `records`, also the runs
    recorded there (`seqtune.experiments.run_records`) that the store lacks."""
    from seqtune.tracking import setup_mlflow

    p = params if isinstance(params, Params) else load_params(params)
    mlflow = setup_mlflow(p.mlflow.tracking_uri, p.mlflow.experiment)
    store = mlflow.search_runs(
        experiment_names=[p.mlflow.experiment],
        filter_string="tags.`seqtune.stage` = 'train'",
        order_by=["start_time DESC"],
    )
    return merge_runs(store, records_frame(records)) if records is not None else store


def match_run(runs, sig: dict[str, str], task: str):
    """The newest evaluated run of `task` whose configuration is `sig`, or None."""
    primary = f"metrics.eval.{get_task(task).primary_metric}"
    if runs is None or runs.empty or "tags.seqtune.task" not in runs or primary not in runs:
        return None
    cand = runs[(runs["tags.seqtune.task"] == task) & runs[primary].notna()]
    # Runs are tagged with the decoding that ran: `verified` asked of a task it is not fair
    # for ran greedy (Task.verified_decoding), so such a point is a greedy run.
    if "tags.evaluate.decoding" in sig:
        sig = {**sig, "tags.evaluate.decoding": get_task(task).decoding_for(sig["tags.evaluate.decoding"])}
    defaults = _key_defaults()
    for _, row in cand.iterrows():  # newest first
        if all(_same(row, col, value, defaults) for col, value in sig.items()):
            return row
    return None
