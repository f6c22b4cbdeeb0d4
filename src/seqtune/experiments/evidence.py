"""The evidence behind a finding: one evaluated run's per-item scores, and honest statistics.

    python -c "from seqtune.experiments.evidence import load_evidence; ..."      # used by `seqtune report`

Every sweep point is scored on the same test items, so two runs are compared item by item:
the standard error of a mean *paired* difference is far smaller than that of two separate
means, and it is the right one. Baselines (the rule-based tool, the zero-shot base model) are
re-scored from the outputs the evaluation stored, with the same task code.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtune.experiments.run_records import present
from seqtune.pipeline.eval_keys import GREEDY, RULE, ZERO_SHOT
from seqtune.tasks import get_task

NOISE_SE = 2.0
"""A difference counts as real when it exceeds this many standard errors (~95%)."""


@dataclass
class RunEvidence:
    """One evaluated training run of one task."""

    run_id: str
    task: str
    row: Any
    """The run's row of `seqtune.experiments.runs.collect_runs()` (params.*, tags.*, metrics.*)."""
    items: list[dict[str, Any]]
    """Per test item: source, target, heavy_atoms, the model's prediction and scores."""
    baselines: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Baseline name -> per-item scores, same items."""
    history: dict[str, dict[int, float]] = field(default_factory=dict)
    """`val_<metric>` -> {epoch: mean over the validation items}: the per-epoch curve."""

    @property
    def short(self) -> str:
        return self.run_id[:8]

    def scores(self, metric: str, who: str = "model") -> list[float]:
        rows = self.items if who == "model" else self.baselines[who]
        return [float(r[metric]) for r in rows]

    def _cell(self, column: str) -> Any:
        value = self.row.get(column) if self.row is not None else None
        return value if present(value) else None

    def metric(self, name: str, default: float = float("nan")) -> float:
        value = self._cell(f"metrics.{name}")
        return default if value is None else float(value)

    def param(self, name: str) -> str | None:
        value = self._cell(f"params.{name}")
        return None if value is None else str(value)

    def tag(self, name: str) -> str | None:
        value = self._cell(f"tags.{name}")
        return None if value is None else str(value)


def load_evidence(row, task: str) -> RunEvidence:
    """The run's stored predictions (the `evaluation/<task>.jsonl` artifact, or its run
    record), re-scored baselines included, and its per-epoch validation curve."""
    from seqtune.experiments.run_records import RECORD_COLUMN, load_from_record

    record = row.get(RECORD_COLUMN)
    if isinstance(record, str):
        items, history = load_from_record(record)
    else:
        items, history = _from_store(row, task)
    t = get_task(task)
    # `smiles` is the input molecule; older predictions files lack it, but it is the source
    # (SMILES in) or the target (SMILES out).
    examples = [{"source": it["source"], "target": it["target"],
                 "smiles": it.get("smiles") or (it["source"] if t.source_kind == "smiles" else it["target"])} for it in items]
    baselines = {}
    # GREEDY: a verified-decoding evaluation also decoded the same items greedily.
    for name in (RULE, ZERO_SHOT, GREEDY):
        if items and name in items[0]:
            baselines[name] = t.score_batch([it.get(name) or "" for it in items], examples)
    return RunEvidence(row.run_id, task, row, items, baselines, history)


def _from_store(row, task: str) -> tuple[list[dict[str, Any]], dict[str, dict[int, float]]]:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=row.run_id, artifact_path=f"evaluation/{task}.jsonl", dst_path=tmp)
        items = [json.loads(line) for line in Path(local).read_text().splitlines() if line.strip()]
    client = mlflow.MlflowClient()
    curves = [k[len("metrics."):] for k in row.index if k.startswith("metrics.val_") and present(row[k])]
    history = {m: {h.step: h.value for h in client.get_metric_history(row.run_id, m)} for m in curves}
    return items, history


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error."""
    n = len(values)
    if n < 2:
        return mean(values), float("nan")
    m = mean(values)
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of b - a over the same items, and its standard error."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison of {len(a)} and {len(b)} items: the runs were not scored on the same test items")
    return mean_se([y - x for x, y in zip(a, b)])


def bound_se(m: float, n: int) -> float:
    """An upper bound on the standard error of a mean of n values in [0, 1] with mean m
    (their variance is at most m(1 - m)): for curves that kept only means, like the
    per-epoch metrics."""
    return math.sqrt(max(m * (1 - m), 0.0) / n) if n > 0 else float("nan")


def change(d: float, se: float) -> str:
    """'rises'/'falls' when |d| exceeds NOISE_SE standard errors, else 'flat'."""
    if math.isnan(se) or se == 0:
        return "rises" if d > 0 else "falls" if d < 0 else "flat"
    if d > NOISE_SE * se:
        return "rises"
    if d < -NOISE_SE * se:
        return "falls"
    return "flat"


def size_bins(heavy_atoms: Sequence[int], n_bins: int = 4) -> list[tuple[int, int]]:
    """Inclusive heavy-atom ranges that split the items into about `n_bins` equal groups
    (the test set's own sizes decide: a fixed grid would leave small-molecule sets in one bin)."""
    values = sorted(heavy_atoms)
    if not values:
        return []
    edges: list[int] = []
    for k in range(1, n_bins):
        cut = values[min(len(values) - 1, round(k * len(values) / n_bins))]
        if cut > values[0] and (not edges or cut > edges[-1]):
            edges.append(cut)
    lows = [values[0], *edges]
    highs = [e - 1 for e in edges] + [values[-1]]
    return list(zip(lows, highs))
