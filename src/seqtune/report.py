"""Findings report from tracked runs: reports/findings.md + PNG plots.

    seqtune report                    # reads MLflow (and sweeps.yaml), writes reports/

For every sweep in sweeps.yaml it picks, per point, the newest MLflow training run whose
params match the point's overrides and that has evaluation metrics, then tabulates and plots
the metrics against the sweep's x (baselines drawn as lines) and states what the numbers
show — a contradiction of the claimed finding is reported as plainly as a confirmation.
Every table and figure names the runs it came from. Re-running regenerates everything.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from seqtune.config import DEFAULT_PARAMS, load_params
from seqtune.io import write_text
from seqtune.sweeps import DEFAULT_SWEEPS, load_sweeps, point_overrides
from seqtune.tasks import get_task

log = logging.getLogger(__name__)

REPORTS = Path("reports")
_SKIP = {"n", "output_len", "items_per_s", "seconds", "verified_gain", "verified_rate", "max_new_tokens", "batch_size", "num_beams"}


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _norm(a), _norm(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def collect_runs(params: Path | str = DEFAULT_PARAMS):
    """All training runs with their params, tags and metrics (a pandas DataFrame)."""
    from seqtune.tracking import setup_mlflow

    p = load_params(params)
    mlflow = setup_mlflow(p.mlflow.tracking_uri, p.mlflow.experiment)
    return mlflow.search_runs(
        experiment_names=[p.mlflow.experiment],
        filter_string="tags.`seqtune.stage` = 'train'",
        order_by=["start_time DESC"],
    )


def match_run(runs, overrides: dict[str, Any], task: str):
    """The newest run of `task` with evaluation metrics whose params match `overrides`."""
    if runs.empty or "tags.seqtune.task" not in runs:
        return None
    primary = f"metrics.eval.{get_task(task).primary_metric}"
    if primary not in runs:
        return None
    cand = runs[(runs["tags.seqtune.task"] == task) & runs[primary].notna()]
    for _, row in cand.iterrows():  # newest first
        if all(k == "tasks" or _same(row.get(f"params.{k}"), v) for k, v in overrides.items()):
            return row
    return None


def metric_names(row) -> list[str]:
    names = [c[len("metrics.eval."):] for c in row.index if c.startswith("metrics.eval.") and not math.isnan(row[c])]
    return [n for n in names if "." not in n and n not in _SKIP]


def _verdict(xs: list, ys: list[float], numeric: bool, metric: str) -> str:
    if len(ys) < 2:
        return "Only one point has been run: no comparison yet."
    if numeric:
        pairs = sorted(zip(xs, ys))
        rising = all(b >= a for (_, a), (_, b) in zip(pairs, pairs[1:]))
        trend = "rises monotonically" if rising else "does not rise monotonically"
        return (f"{metric} {trend} with x: " + ", ".join(f"{x} → {y:.3f}" for x, y in pairs)
                + f" (change {pairs[-1][1] - pairs[0][1]:+.3f}).")
    best = max(range(len(ys)), key=ys.__getitem__)
    worst = min(range(len(ys)), key=ys.__getitem__)
    return (f"best {metric}: {xs[best]} ({ys[best]:.3f}); worst: {xs[worst]} ({ys[worst]:.3f}); "
            f"spread {ys[best] - ys[worst]:.3f}.")


def _plot(path: Path, title: str, xs: list, series: dict[str, list[float]], baselines: dict[str, float], numeric: bool, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    if numeric:
        for name, ys in series.items():
            ax.plot(xs, ys, marker="o", label=name)
        if len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 4:
            ax.set_xscale("log")
    else:
        width = 0.8 / max(len(series), 1)
        for j, (name, ys) in enumerate(series.items()):
            ax.bar([i + j * width for i in range(len(xs))], ys, width, label=name)
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(xs))], [str(x) for x in xs])
    for (name, value), style in zip(baselines.items(), ("--", ":", "-.")):
        ax.axhline(value, linestyle=style, color="grey", label=name)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _epoch_history(run_id: str, metric: str) -> tuple[list[int], list[float]]:
    from mlflow import MlflowClient

    hist = sorted(MlflowClient().get_metric_history(run_id, f"val_{metric}"), key=lambda m: m.step)
    return [m.step for m in hist], [m.value for m in hist]


def sweep_section(name: str, sweeps, runs, out: Path) -> str:
    sweep = sweeps.sweeps[name]
    first = point_overrides(sweeps, name, 0)
    tasks = first.get("tasks") or load_params().tasks
    lines = [f"## {name}: {sweep.finding}", ""]
    for task in tasks:
        primary = get_task(task).primary_metric
        rows = [match_run(runs, point_overrides(sweeps, name, i), task) for i in range(len(sweep.points))]
        done = [(i, r) for i, r in enumerate(rows) if r is not None]
        lines.append(f"### {task} (primary metric: {primary})")
        if not done:
            cmd = f"seqtune sweep queue {name} && dvc queue start -j 1"
            lines += ["", f"No matching runs yet: `{cmd}`.", ""]
            continue
        metrics = metric_names(done[0][1])
        base = {f"{b} ({primary})": float(done[0][1][f"metrics.eval.{b}.{primary}"])
                for b in ("baseline_rule", "baseline_zero_shot") if f"metrics.eval.{b}.{primary}" in done[0][1]
                and not math.isnan(done[0][1][f"metrics.eval.{b}.{primary}"])}
        png = out / f"{name}_{task}.png"
        if sweep.x == "epoch":
            run = done[0][1]
            lines += ["", "| epoch | " + " | ".join(f"val {m}" for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
            hist = {m: _epoch_history(run.run_id, m) for m in metrics}
            epochs = hist[primary][0] if primary in hist else []
            for k, e in enumerate(epochs):
                lines.append(f"| {e} | " + " | ".join(f"{hist[m][1][k]:.3f}" if k < len(hist[m][1]) else "" for m in metrics) + " |")
            if epochs:
                _plot(png, f"{task}: metrics by epoch", epochs, {m: hist[m][1] for m in metrics}, base, True, "epoch")
                lines += ["", _verdict(epochs, hist[primary][1], True, f"val {primary}")]
            lines += ["", f"Run: `{run.run_id}`."]
        else:
            xs = [_norm(sweep.points[i][sweep.x]) for i, _ in done]
            numeric = all(isinstance(x, (int, float)) for x in xs)
            lines += ["", f"| {sweep.x} | run | " + " | ".join(metrics) + " | train s |", "|---" * (len(metrics) + 3) + "|"]
            for x, (_, r) in zip(xs, done):
                secs = r.get("metrics.train_runtime", float("nan"))
                lines.append(f"| {x} | `{r.run_id[:8]}` | " + " | ".join(f"{r[f'metrics.eval.{m}']:.3f}" for m in metrics)
                             + f" | {secs:.0f} |")
            series = {m: [float(r[f"metrics.eval.{m}"]) for _, r in done] for m in metrics}
            _plot(png, f"{task}: {sweep.x}", xs, series, base, numeric, sweep.x)
            lines += ["", _verdict(xs, series[primary], numeric, primary)]
            missing = len(sweep.points) - len(done)
            if missing:
                lines.append(f"{missing} point(s) not run yet.")
        if base:
            lines.append("Baselines: " + "; ".join(f"{k} = {v:.3f}" for k, v in base.items()) + ".")
        lines += ["", f"![{name} {task}]({png.name})", ""]
    return "\n".join(lines)


def main(*, params: Path | str = DEFAULT_PARAMS, sweeps_path: Path | str = DEFAULT_SWEEPS, out: Path | str = REPORTS) -> Path:
    """Write reports/findings.md (+ PNGs) from every tracked run; returns the markdown path."""
    out = Path(out)
    sweeps = load_sweeps(sweeps_path, params)
    runs = collect_runs(params)
    log.info("%d training runs in the store", len(runs))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# seqtune findings",
        "",
        f"Generated {now} by `seqtune report` from {len(runs)} MLflow training runs and `sweeps.yaml`.",
        "Each table row is one run (MLflow run id); plots sit beside this file. Regenerate with `seqtune report`.",
        "",
    ]
    parts += [sweep_section(name, sweeps, runs, out) for name in sweeps.sweeps]
    md = out / "findings.md"
    out.mkdir(parents=True, exist_ok=True)
    write_text(md, "\n".join(parts) + "\n")
    log.info("wrote %s", md)
    return md

