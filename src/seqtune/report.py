"""Findings report from tracked runs: reports/findings.md + PNG plots.

    seqtune report                    # reads MLflow and sweeps.yaml, writes reports/

For every sweep in sweeps.yaml and every task it runs, the report takes, per point, the
newest evaluated MLflow training run of exactly that configuration (`seqtune.runs`), reads
its per-item scores, and states what they show about the sweep's claim: a difference counts
only beyond two standard errors of the paired difference (the points share their test
items), and a contradiction is reported as plainly as a confirmation. Each sweep gets a
table, a figure per metric (baselines as lines), and a figure by molecule size; each names
the runs it came from. Re-running regenerates everything from whatever runs exist.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqtune.config import DEFAULT_PARAMS, load_params, read_yaml
from seqtune.evaluate import RULE, ZERO_SHOT
from seqtune.evidence import RunEvidence, bound_se, change, load_evidence, mean, mean_se, paired, size_bins
from seqtune.io import write_text
from seqtune.report_plots import Panel, draw
from seqtune.runs import RESUMED_TAG, collect_runs, match_run, signature
from seqtune.sweeps import DEFAULT_SWEEPS, SweepFile, load_sweeps, point_params
from seqtune.tasks import get_task

log = logging.getLogger(__name__)

REPORTS = Path("reports")
BASELINE_NAMES = {RULE: "rule-based tool", ZERO_SHOT: "zero-shot base model"}
_NOT_METRICS = {"n", "items_per_s", "seconds", "verified_gain", "verified_rate", "max_new_tokens", "batch_size", "num_beams"}


@dataclass
class Verdict:
    task: str
    status: str
    """supported | contradicted | partly supported | not shown | not run."""
    text: str


@dataclass
class Section:
    name: str
    finding: str
    lines: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    runs: set[str] = field(default_factory=set)


class Evidence:
    """Loads each run's evidence once (a run often serves several sweeps)."""

    def __init__(self, runs):
        self.runs = runs
        self._cache: dict[tuple[str, str], RunEvidence] = {}

    def loaded(self) -> list[RunEvidence]:
        return list(self._cache.values())

    def get(self, sig: dict[str, str], task: str) -> RunEvidence | None:
        row = match_run(self.runs, sig, task)
        if row is None:
            return None
        key = (row.run_id, task)
        if key not in self._cache:
            self._cache[key] = load_evidence(row, task)
        return self._cache[key]


# ---------------------------------------------------------------------------------------
# formatting


def _f(value: float, se: float | None = None) -> str:
    if value != value:
        return "–"
    return f"{value:.3f}" if se is None or se != se else f"{value:.3f} ± {se:.3f}"


def _int(value: float) -> str:
    return "–" if value != value else f"{value:.0f}"


def _train_s(ev: RunEvidence) -> str:
    """Training seconds; a resumed run's Trainer counts only the time after its last resume."""
    steps = ev.tag(RESUMED_TAG)
    return _int(ev.metric("train_runtime")) + (f" (after resume at step {steps.split(',')[-1]})" if steps else "")


def _d(d: float, se: float) -> str:
    return f"{d:+.3f} ± {se:.3f}"


def metric_order(task: str, ev: RunEvidence) -> list[str]:
    """Primary, graded, then the task's other [0, 1] metrics (lengths and counters left out)."""
    t = get_task(task)
    names = [k for k, v in ev.items[0].items() if isinstance(v, float) and not k.endswith("_len") and k not in _NOT_METRICS]
    head = [m for m in (t.primary_metric, t.graded_metric) if m and m in names]
    return head + [m for m in names if m not in head]


def _headline(task: str) -> list[str]:
    t = get_task(task)
    return [m for m in (t.primary_metric, t.graded_metric) if m]


def _footer(evs: list[tuple[Any, RunEvidence]], key: str) -> str:
    return "runs: " + ", ".join(f"{ev.short} ({key}={x})" for x, ev in evs)


# ---------------------------------------------------------------------------------------
# verdicts


def trend_verdict(task: str, points: list[tuple[Any, RunEvidence]], what: str) -> Verdict:
    """Does the claim "more of x helps" hold between the smallest and the largest x
    (`points` in x order)? Every point's mean is listed, so a dip between them shows."""
    primary, graded = get_task(task).primary_metric, get_task(task).graded_metric
    (x0, a), (x1, b) = points[0], points[-1]
    parts, changes = [], {}
    for m in [primary] + ([graded] if graded else []):
        d, se = paired(a.scores(m), b.scores(m))
        changes[m] = change(d, se)
        parts.append(f"{m} {_f(mean(a.scores(m)))} → {_f(mean(b.scores(m)))} ({_d(d, se)}, {changes[m]})")
    text = f"{what} {x0} → {x1}: " + "; ".join(parts) + "."
    if len(points) > 2:
        text += f" {primary} at each {what}: " + ", ".join(f"{x} {_f(mean(ev.scores(primary)))}" for x, ev in points) + "."
    if changes[primary] == "rises":
        return Verdict(task, "supported", text)
    if changes[primary] == "falls":
        return Verdict(task, "contradicted", text)
    if graded and changes[graded] == "rises":
        return Verdict(task, "partly supported", text + f" Only the graded {graded} moves beyond noise.")
    if graded and changes[graded] == "falls":
        return Verdict(task, "contradicted", text + f" The graded {graded} falls.")
    return Verdict(task, "not shown", text + " No change beyond noise at this scale.")


def spread_verdict(task: str, points: list[tuple[Any, RunEvidence]], what: str) -> Verdict:
    """Does the choice among categories matter? Best vs worst, paired, on the primary metric
    (on the graded one when the primary cannot rank them: all equal)."""
    t = get_task(task)
    metric = t.primary_metric
    if t.graded_metric and len({round(mean(ev.scores(metric)), 9) for _, ev in points}) == 1:
        metric = t.graded_metric
    ranked = sorted(points, key=lambda p: mean(p[1].scores(metric)), reverse=True)
    (best_x, best), (worst_x, worst) = ranked[0], ranked[-1]
    d, se = paired(worst.scores(metric), best.scores(metric))
    ref_x, ref = points[0]
    vs_ref = "; ".join(f"{x} {_d(*paired(ref.scores(metric), ev.scores(metric)))}" for x, ev in points[1:])
    secs = ", ".join(f"{x} {_train_s(ev)}" for x, ev in points)
    text = (f"on {metric}, best {best_x} ({_f(mean(best.scores(metric)))}), worst {worst_x} "
            f"({_f(mean(worst.scores(metric)))}): {_d(d, se)} paired; against {ref_x}: {vs_ref}. Train s: {secs}.")
    if change(d, se) == "rises":
        status = "supported" if metric == t.primary_metric else "partly supported"
        return Verdict(task, status, f"{what} matters: {text}")
    return Verdict(task, "not shown", f"{what}: no difference beyond noise, {text}")


# ---------------------------------------------------------------------------------------
# sections


def _sweep_tasks(sweeps: SweepFile, name: str, raw: dict) -> list[str]:
    tasks: list[str] = []
    for i in range(len(sweeps.sweeps[name].points)):
        tasks += [t for t in point_params(sweeps, name, i, raw).tasks if t not in tasks]
    return tasks


def _baseline_block(task: str, ev: RunEvidence, sec: Section) -> None:
    metrics = metric_order(task, ev)
    sec.lines += ["| who | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    rows = [("fine-tuned", None)] + [(BASELINE_NAMES[b], b) for b in (ZERO_SHOT, RULE) if b in ev.baselines]
    for label, who in rows:
        vals = [mean_se(ev.scores(m, who or "model")) for m in metrics]
        sec.lines.append(f"| {label} | " + " | ".join(_f(m, se) for m, se in vals) + " |")
    sec.lines.append("")
    if ZERO_SHOT not in ev.baselines:
        sec.verdicts.append(Verdict(task, "not shown", "the run has no zero-shot baseline (evaluate.zero_shot_baseline: false)"))
        return
    parts, moved = [], {}
    for m in _headline(task):
        d, se = paired(ev.scores(m, ZERO_SHOT), ev.scores(m))
        moved[m] = change(d, se)
        parts.append(f"{m} {_f(mean(ev.scores(m, ZERO_SHOT)))} → {_f(mean(ev.scores(m)))} ({_d(d, se)})")
    primary = get_task(task).primary_metric
    text = "zero-shot → fine-tuned: " + "; ".join(parts) + "."
    if moved[primary] == "rises":
        status = "supported"
    elif any(v == "rises" for v in moved.values()):
        status, text = "partly supported", text + f" The {primary} itself does not move beyond noise."
    else:
        status = "not shown"
    sec.verdicts.append(Verdict(task, status, text))


def _epoch_block(task: str, ev: RunEvidence, sec: Section, out: Path, n_val: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    metrics = metric_order(task, ev)
    hist = {}
    for m in metrics:
        points = sorted(client.get_metric_history(ev.run_id, f"val_{m}"), key=lambda h: h.step)
        hist[m] = {h.step: h.value for h in points}
    epochs = sorted(set().union(*[h.keys() for h in hist.values()])) if hist else []
    if not epochs:
        sec.lines += [f"Run `{ev.short}` logged no per-epoch metrics (train.val_size: 0).", ""]
        sec.verdicts.append(Verdict(task, "not run", "no per-epoch metrics"))
        return
    sec.lines += ["| epoch | " + " | ".join(f"val {m}" for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for e in epochs:
        sec.lines.append(f"| {e} | " + " | ".join(_f(hist[m].get(e, float("nan"))) for m in metrics) + " |")
    base = {BASELINE_NAMES[b]: b for b in (ZERO_SHOT, RULE) if b in ev.baselines}
    panels = [Panel(m, {"validation": ([hist[m].get(e, float("nan")) for e in epochs],
                                       [bound_se(hist[m].get(e, float("nan")), n_val) for e in epochs])},
                    {label: mean(ev.scores(m, b)) for label, b in base.items()}) for m in _headline(task)]
    png = draw(out / f"{sec.name}_{task}.png", title=f"{task}: validation metrics by epoch", xlabel="epoch", xs=epochs,
               panels=panels, footer=f"run: {ev.short} ({n_val} validation items after every epoch)")
    primary = get_task(task).primary_metric
    first, last = epochs[0], epochs[-1]
    parts, moved = [], {}
    for m in _headline(task):
        a, b = hist[m].get(first, float("nan")), hist[m].get(last, float("nan"))
        se = math.hypot(bound_se(a, n_val), bound_se(b, n_val))
        moved[m] = change(b - a, se)
        tail = hist[m].get(epochs[-2], float("nan")) if len(epochs) > 1 else float("nan")
        parts.append(f"{m} epoch {first} → {last}: {_f(a)} → {_f(b)} ({_d(b - a, se)}, {moved[m]}; last epoch {b - tail:+.3f})")
    text = "; ".join(parts) + (f". ± is an upper bound on the standard error of a [0, 1] mean over {n_val} items "
                               f"(the per-epoch curve keeps means only). Flattening after 20-30 epochs cannot show in {last} epochs: "
                               "that needs the paper profile (sweeps-paper.yaml).")
    status = ("supported" if moved[primary] == "rises" else "contradicted" if moved[primary] == "falls"
              else "partly supported" if "rises" in moved.values() else "not shown")
    sec.verdicts.append(Verdict(task, status, text))
    sec.lines += ["", f"![{sec.name} {task}]({png.name})", ""]


def _points_block(task: str, sweeps: SweepFile, name: str, evs: list[tuple[Any, RunEvidence]], missing: list[Any],
                  sec: Section, out: Path) -> None:
    sweep = sweeps.sweeps[name]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in evs)
    if numeric:
        evs = sorted(evs, key=lambda p: p[0])
    metrics = metric_order(task, evs[0][1])
    head = _headline(task)
    # The zero-shot baseline belongs to each run: another base model or another prompt
    # format is another zero-shot model. The rule-based tool is the same for every point.
    zero = all(ZERO_SHOT in ev.baselines for _, ev in evs)
    zcols = [f"zero-shot {m}" for m in head] if zero else []
    sec.lines += [f"| {sweep.x} | run | " + " | ".join(metrics + zcols) + " | train s | tokens/s |",
                  "|---" * (len(metrics) + len(zcols) + 4) + "|"]
    for x, ev in evs:
        cells = [_f(*mean_se(ev.scores(m))) for m in metrics] + ([_f(mean(ev.scores(m, ZERO_SHOT))) for m in head] if zero else [])
        sec.lines.append(f"| {x} | `{ev.short}` | " + " | ".join(cells)
                         + f" | {_train_s(ev)} | {_int(ev.metric('train_tokens_per_s'))} |")
    ref = evs[0][1]
    rule = RULE in ref.baselines
    if rule:
        sec.lines.append(f"| *{BASELINE_NAMES[RULE]}* | | " + " | ".join(_f(mean(ref.scores(m, RULE))) for m in metrics)
                         + " |" * (len(zcols) + 3))
    sec.lines += ["", "Values: mean ± standard error over the same test items for every run; zero-shot: each run's own base "
                  "model, prompted in its format, before fine-tuning."]
    if missing:
        sec.lines.append(f"Not run yet: {sweep.x} = {', '.join(map(str, missing))} (`seqtune sweep queue {name}`).")
    sec.lines.append("")

    xs = [x for x, _ in evs]
    panels = []
    for m in head:
        series = {"fine-tuned": ([mean(ev.scores(m)) for _, ev in evs], [mean_se(ev.scores(m))[1] for _, ev in evs])}
        if zero:
            series[BASELINE_NAMES[ZERO_SHOT]] = ([mean(ev.scores(m, ZERO_SHOT)) for _, ev in evs], [float("nan")] * len(evs))
        panels.append(Panel(m, series, {BASELINE_NAMES[RULE]: mean(ref.scores(m, RULE))} if rule else {}))
    footer = _footer(evs, sweep.x)
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 4
    png = draw(out / f"{name}_{task}.png", title=f"{task}: {sweep.finding}", xlabel=sweep.x, xs=xs, panels=panels,
               footer=footer, kind="line" if numeric else "bar", log_x=log_x)
    sec.lines += [f"![{name} {task}]({png.name})", ""]

    # By molecule size: the same items in heavy-atom bins, one line per point.
    heavy = [int(it["heavy_atoms"]) for it in ref.items]
    bins = size_bins(heavy)
    if len(bins) > 1:
        labels = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in bins]
        members = [[i for i, h in enumerate(heavy) if lo <= h <= hi] for lo, hi in bins]
        size_panels = []
        for m in _headline(task):
            series = {}
            for x, ev in evs:
                vals = ev.scores(m)
                series[f"{sweep.x}={x}"] = ([mean([vals[i] for i in idx]) for idx in members],
                                            [mean_se([vals[i] for i in idx])[1] for idx in members])
            size_panels.append(Panel(m, series))
        png = draw(out / f"{name}_{task}_by_size.png", title=f"{task}: by molecule size ({sweep.x})",
                   xlabel="heavy atoms (n items)", xs=[f"{lab}\n(n={len(idx)})" for lab, idx in zip(labels, members)],
                   panels=size_panels, footer=footer)
        graded = get_task(task).graded_metric or get_task(task).primary_metric
        sec.lines += [f"By molecule size ({graded}):", "", f"| heavy atoms | n | " + " | ".join(f"{sweep.x}={x}" for x in xs) + " |",
                      "|---" * (len(xs) + 2) + "|"]
        for lab, idx in zip(labels, members):
            sec.lines.append(f"| {lab} | {len(idx)} | " + " | ".join(_f(mean([ev.scores(graded)[i] for i in idx])) for _, ev in evs) + " |")
        sec.lines += ["", f"![{name} {task} by size]({png.name})", ""]

    if len(evs) < 2:
        sec.verdicts.append(Verdict(task, "not run", f"only {sweep.x} = {evs[0][0]} has a run: nothing to compare yet"))
    elif numeric:
        sec.verdicts.append(trend_verdict(task, evs, sweep.x))
    else:
        sec.verdicts.append(spread_verdict(task, evs, sweep.x))


def sweep_section(name: str, sweeps: SweepFile, raw: dict, evidence: Evidence, out: Path) -> Section:
    sweep = sweeps.sweeps[name]
    sec = Section(name, sweep.finding, [f'<a id="{name}"></a>', "", f"## {name}: {sweep.finding}", ""])
    if sweep.note:
        sec.lines += [f"*Note:* {sweep.note.strip()}", ""]
    for task in _sweep_tasks(sweeps, name, raw):
        t = get_task(task)
        sec.lines += [f"### {task} (primary metric: {t.primary_metric}; graded: {t.graded_metric or '–'})", ""]
        found, missing = [], []
        for i, point in enumerate(sweep.points):
            p = point_params(sweeps, name, i, raw)
            if task not in p.tasks:
                continue
            ev = evidence.get(signature(p), task)
            x = point.get(sweep.x, i) if sweep.x not in ("epoch", "baseline") else i
            if ev is None:
                missing.append(x)
            else:
                found.append((x, ev, p))
        if not found:
            sec.lines += [f"No run of this configuration yet: `seqtune sweep queue {name} && dvc queue start -j 1`.", ""]
            sec.verdicts.append(Verdict(task, "not run", "no matching run yet"))
            continue
        sec.runs |= {ev.run_id for _, ev, _ in found}
        x, ev, p = found[0]
        if sweep.x == "baseline":
            sec.lines += [f"Run `{ev.short}` ({p.data.n_train} examples, {p.train.epochs:g} epochs, {p.data.format} format, "
                          f"{p.base_model.name}), {len(ev.items)} test items:", ""]
            _baseline_block(task, ev, sec)
        elif sweep.x == "epoch":
            _epoch_block(task, ev, sec, out, n_val=p.train.val_size)
        else:
            _points_block(task, sweeps, name, [(x, ev) for x, ev, _ in found], missing, sec, out)
        sec.lines += [f"**{sec.verdicts[-1].status}**: {sec.verdicts[-1].text}", ""]
    return sec


# ---------------------------------------------------------------------------------------
# the report


def _setup_table(sweeps: SweepFile) -> list[str]:
    lines = ["| setting (every point, unless its sweep varies it) | value |", "|---|---|"]
    lines += [f"| `{k}` | {', '.join(map(str, v)) if isinstance(v, list) else v} |" for k, v in sweeps.common.items()]
    return lines + [""]


def main(*, params: Path | str = DEFAULT_PARAMS, sweeps_path: Path | str = DEFAULT_SWEEPS, out: Path | str = REPORTS,
         paper_sweeps: Path | str | None = None) -> Path:
    """Write `out`/findings.md (+ PNGs) from every tracked run; returns the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = load_sweeps(sweeps_path, params)
    raw = read_yaml(params)
    runs = collect_runs(load_params(params))
    log.info("%d training runs in the store", len(runs))
    evidence = Evidence(runs)
    sections = [sweep_section(name, sweeps, raw, evidence, out) for name in sweeps.sweeps]
    used = set().union(*(s.runs for s in sections)) if sections else set()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    seconds = sum(ev.metric("train_runtime", 0.0) for ev in evidence.loaded())
    resumed = any(ev.tag(RESUMED_TAG) for ev in evidence.loaded())
    parts = [
        "# seqtune findings",
        "",
        f"Generated {now} by `seqtune report` from {len(used)} of the {len(runs)} MLflow training runs in the store, "
        f"for the sweeps in `{Path(sweeps_path).name}` ({'at least ' if resumed else ''}{seconds / 3600:.1f} h of training "
        f"in the runs used{'; resumed runs count only the time after the resume' if resumed else ''}). "
        "Each table row is one run (MLflow run id); each figure names its runs. Regenerate with `seqtune report`.",
        "",
        "A difference counts when it exceeds two standard errors of the paired difference over the same test items "
        "(± values below are one standard error).",
        "",
        "## Summary",
        "",
        "| sweep | claim | task | verdict | evidence |",
        "|---|---|---|---|---|",
    ]
    for s in sections:
        for v in s.verdicts:
            parts.append(f"| [{s.name}](#{s.name}) | {s.finding} | {v.task} | **{v.status}** | {v.text} |")
    parts += ["", "## What was run", "", *_setup_table(sweeps)]
    for s in sections:
        parts += s.lines
    if paper_sweeps and Path(paper_sweeps).exists():
        from seqtune.cost import cost_section

        parts += cost_section(paper_sweeps, params=params, runs=runs)
    md = out / "findings.md"
    write_text(md, "\n".join(parts) + "\n")
    log.info("wrote %s", md)
    return md
