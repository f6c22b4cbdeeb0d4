"""Findings report from tracked runs: reports/findings.md + PNG plots.

    seqtune report                    # reads MLflow, reports/runs/ and sweeps/cpu.yaml, writes reports/

For every sweep in the sweep file (`--sweeps`, sweeps/cpu.yaml by default) and every task it
runs, the report takes, per point, the newest evaluated training run of exactly that configuration (`seqtune.experiments.runs`)
from the MLflow store or from the run records a report keeps in git
(`seqtune.experiments.run_records`), reads its per-item scores, and states what they show
about the sweep's claim (`seqtune.experiments.verdicts`): a difference counts only beyond two standard errors of the paired difference (the points
share their test items), and a contradiction is reported as plainly as a confirmation. Each sweep gets a
table, a figure per metric (baselines as lines), and a figure by molecule size; each names
the runs it came from. Re-running regenerates everything from whatever runs exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqtune.config import DEFAULT_PARAMS, load_params, read_yaml
from seqtune.experiments.evidence import RunEvidence, bound_se, change, load_evidence, mean, mean_se, paired, size_bins
from seqtune.experiments.report_plots import Curve, Panel, draw, draw_curves
from seqtune.experiments.run_records import RECORD_COLUMN, present, write_record
from seqtune.experiments.runs import collect_runs, match_run, signature
from seqtune.experiments.sweeps import DEFAULT_SWEEPS, SweepFile, load_sweeps, point_params, shown
from seqtune.files import write_text
from seqtune.pipeline.eval_keys import GREEDY, RULE, ZERO_SHOT
from seqtune.tasks import get_task
from seqtune.tracking import RESUMED_TAG
from seqtune.experiments.verdicts import (EpochCurve, Verdict, claim_verdict, epoch_verdict, fmt, fmt_diff, fmt_int, headline_metrics, spread_verdict,
                              train_seconds, trend_verdict, verified_verdict)

log = logging.getLogger(__name__)

REPORTS = Path("reports")
RECORDS = REPORTS / "runs"
"""Run records (`seqtune.experiments.run_records`): the evidence of every run a report used,
kept in git."""
BASELINE_NAMES = {RULE: "rule-based tool", ZERO_SHOT: "zero-shot base model", GREEDY: "same model, greedy decoding"}
_NOT_METRICS = {"n", "items_per_s", "seconds", "verified_gain", "verified_rate", "max_new_tokens", "batch_size", "num_beams"}


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


def metric_order(task: str, ev: RunEvidence) -> list[str]:
    """Primary, graded, then the task's other [0, 1] metrics by name (lengths and counters
    left out). By name, not in the items' key order: that order differs between a run read
    from the MLflow store and one read from its record, and the tables' columns moved with it."""
    t = get_task(task)
    names = [k for k, v in ev.items[0].items() if isinstance(v, float) and not k.endswith("_len") and k not in _NOT_METRICS]
    head = [m for m in (t.primary_metric, t.graded_metric) if m and m in names]
    return head + sorted(m for m in names if m not in head)


def _footer(evs: list[tuple[Any, RunEvidence]], key: str) -> str:
    return "runs: " + ", ".join(f"{ev.short} ({key}={x})" for x, ev in evs)


# ---------------------------------------------------------------------------------------
# sections


def _sweep_tasks(sweeps: SweepFile, name: str, raw: dict) -> list[str]:
    tasks: list[str] = []
    for i in range(len(sweeps.sweeps[name].points)):
        tasks += [t for t in point_params(sweeps, name, i, raw).tasks if t not in tasks]
    return tasks


def real_band_rows(ev: RunEvidence, primary: str) -> list[tuple[str, int, float, float | None]]:
    """(band, n, primary metric, verified share) per real-molecule band the run's evaluation
    logged (`eval.real.<band>.*`, stage real_molecules), in size order; [] for runs before it."""
    row = ev.row if ev.row is not None else {}
    bands = sorted({c.split(".")[3] for c in row.keys() if str(c).startswith("metrics.eval.real.") and
                    present(row.get(c))}, key=lambda b: int(b.split("-")[0]))
    out = []
    for b in bands:
        n = ev.metric(f"eval.real.{b}.n")
        value = ev.metric(f"eval.real.{b}.{primary}")
        verified = ev.metric(f"eval.real.{b}.verified_rate")
        out.append((b, int(n), value, None if verified != verified else verified))
    return out


def _real_block(task: str, ev: RunEvidence, sec: Section) -> None:
    primary = get_task(task).primary_metric
    rows = real_band_rows(ev, primary)
    if not rows:
        return
    sec.lines += [f"On real molecules never trained on (stage real_molecules: {primary} by heavy-atom band, "
                  f"same decoding; ± one standard error):", "",
                  "| heavy atoms | n | " + primary + " | verified |", "|---|---|---|---|"]
    for band, n, value, verified in rows:
        se = (value * (1 - value) / n) ** 0.5 if n else float("nan")
        sec.lines.append(f"| {band} | {n} | {fmt(value, se)} | {'–' if verified is None else fmt(verified)} |")
    sec.lines.append("")


def _baseline_block(task: str, ev: RunEvidence, sec: Section) -> None:
    _real_block(task, ev, sec)
    metrics = metric_order(task, ev)
    sec.lines += ["| who | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    label = "fine-tuned" + (" (verified beams)" if GREEDY in ev.baselines else "")
    rows = [(label, None)] + [(BASELINE_NAMES[b], b) for b in (GREEDY, ZERO_SHOT, RULE) if b in ev.baselines]
    for label, who in rows:
        vals = [mean_se(ev.scores(m, who or "model")) for m in metrics]
        sec.lines.append(f"| {label} | " + " | ".join(fmt(m, se) for m, se in vals) + " |")
    sec.lines.append("")
    if GREEDY in ev.baselines:
        # A verified-decoding evaluation: the claim is about decoding, same model on both sides.
        sec.verdicts.append(verified_verdict(task, ev))
        return
    if ZERO_SHOT not in ev.baselines:
        sec.verdicts.append(Verdict(task, "not shown", "the run has no zero-shot baseline (evaluate.zero_shot_baseline: false)"))
        return
    parts, moved = [], {}
    for m in headline_metrics(task):
        d, se = paired(ev.scores(m, ZERO_SHOT), ev.scores(m))
        moved[m] = change(d, se)
        parts.append(f"{m} {fmt(mean(ev.scores(m, ZERO_SHOT)))} → {fmt(mean(ev.scores(m)))} ({fmt_diff(d, se)})")
    primary = get_task(task).primary_metric
    text = "zero-shot → fine-tuned: " + "; ".join(parts) + "."
    if moved[primary] == "rises":
        status = "supported"
    elif any(v == "rises" for v in moved.values()):
        status, text = "partly supported", text + f" The {primary} itself does not move beyond noise."
    else:
        status = "not shown"
    sec.verdicts.append(Verdict(task, status, text))


def _epoch_block(task: str, curves: list[EpochCurve], sec: Section, out: Path) -> None:
    """A table per run of its validation metrics after every epoch, one figure with every
    run's curve, and the verdict on the longest run."""
    curves = [c for c in curves if c.epochs]
    if not curves:
        sec.lines += ["The runs logged no per-epoch metrics (train.val_size: 0).", ""]
        sec.verdicts.append(Verdict(task, "not run", "no per-epoch metrics"))
        return
    for c in curves:
        metrics = [m for m in metric_order(task, c.ev) if c.values(m)]
        sec.lines += [f"Run `{c.ev.short}`: {c.label}, {c.n_val} validation items:", "",
                      "| epoch | " + " | ".join(f"val {m}" for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        sec.lines += [f"| {e} | " + " | ".join(fmt(c.values(m).get(e, float("nan"))) for m in metrics) + " |" for e in c.epochs]
        sec.lines.append("")
    epochs = sorted(set().union(*(c.epochs for c in curves)))
    ref = curves[0].ev
    base = {BASELINE_NAMES[b]: b for b in (ZERO_SHOT, RULE) if b in ref.baselines}
    panels = []
    for m in headline_metrics(task):
        series = {}
        for c in curves:
            vals = [c.values(m).get(e, float("nan")) for e in epochs]
            series[c.label] = (vals, [bound_se(v, c.n_val) for v in vals])
        panels.append(Panel(m, series, {label: mean(ref.scores(m, b)) for label, b in base.items()}))
    png = draw(out / f"{sec.name}_{task}.png", title=f"{task}: validation metrics by epoch", xlabel="epoch", xs=epochs,
               panels=panels, footer="runs: " + ", ".join(f"{c.ev.short} ({c.label}, {c.n_val} validation items)" for c in curves)
               + f"; baselines from {ref.short}")
    sec.verdicts.append(epoch_verdict(task, curves))
    sec.lines += [f"![{sec.name} {task}]({png.name})", ""]


def _precision(ev: RunEvidence) -> str:
    return "bf16" if ev.param("bf16") == "True" else "fp32"


def _hours_block(task: str, found: list[tuple[str, RunEvidence, Any]], sec: Section, out: Path) -> None:
    """Quality against training time: each run a line from its zero-shot score at 0 h through
    its per-epoch validation scores (epoch e of E at e/E of its training time) to its test
    score (a star), so a reader sees what another hour of this machine buys."""
    rows = sorted(found, key=lambda f: f[1].metric("train_runtime"))
    head = headline_metrics(task)
    primary = head[0]
    sec.lines += ["| point | run | precision | train s | tokens/s | " + " | ".join(f"test {m}" for m in head)
                  + f" | val {primary} after each epoch (at h) |", "|---" * (len(head) + 6) + "|"]
    panels: list[tuple[str, dict[str, Curve]]] = [(m, {}) for m in head]
    for label, ev, p in rows:
        hours = ev.metric("train_runtime") / 3600
        curve = EpochCurve(label, ev, p.train.val_size)
        at = {e: hours * e / p.train.epochs for e in curve.epochs}
        per_epoch = ", ".join(f"{fmt(curve.values(primary)[e])} ({at[e]:.2f} h)" for e in curve.epochs if e in curve.values(primary))
        sec.lines.append(f"| {label} | `{ev.short}` | {_precision(ev)} | {train_seconds(ev)} | "
                         f"{fmt_int(ev.metric('train_tokens_per_s'))} | " + " | ".join(fmt(*mean_se(ev.scores(m))) for m in head)
                         + f" | {per_epoch or '–'} |")
        for m, curves in panels:
            vals = curve.values(m)
            xs = ([0.0] if ZERO_SHOT in ev.baselines else []) + [at[e] for e in curve.epochs if e in vals]
            ys = ([mean(ev.scores(m, ZERO_SHOT))] if ZERO_SHOT in ev.baselines else []) + [vals[e] for e in curve.epochs if e in vals]
            curves[f"{label} ({_precision(ev)}, {ev.short})"] = Curve(xs, ys, (hours, *mean_se(ev.scores(m))))
    sec.lines += ["", "Hours are this run's training time on its machine (precision says which kind: bf16 needs "
                  "AVX512-BF16, fp32 runs ~2.5× slower per token); validation is the first `train.val_size` test items, "
                  "the star the full test set.", ""]
    ref = rows[0][1]
    rule = [{BASELINE_NAMES[RULE]: mean(ref.scores(m, RULE))} if RULE in ref.baselines else {} for m in head]
    png = draw_curves(out / f"{sec.name}_{task}.png", title=f"{task}: quality against training time", xlabel="training hours",
                      panels=panels, baselines=rule,
                      footer="runs: " + ", ".join(f"{ev.short} ({label})" for label, ev, _ in rows))
    sec.lines += [f"![{sec.name} {task}]({png.name})", ""]
    if len(rows) < 2:
        sec.verdicts.append(epoch_verdict(task, [EpochCurve(label, ev, p.train.val_size) for label, ev, p in rows]))
    else:
        sec.verdicts.append(trend_verdict(task, [(f"{ev.metric('train_runtime') / 3600:.2f} h", ev) for _, ev, _ in rows],
                                          "training time"))


def _points_table(task: str, sweep, evs: list[tuple[Any, RunEvidence]], missing: list[Any], zero: bool, sec: Section,
                  queue_hint: str) -> None:
    """A row per point (every metric ± SE, each run's zero-shot scores when all have one,
    time and throughput), the rule-based tool's row, and which points have no run yet."""
    metrics = metric_order(task, evs[0][1])
    head = headline_metrics(task)
    zcols = [f"zero-shot {m}" for m in head] if zero else []
    sec.lines += [f"| {sweep.x} | run | " + " | ".join(metrics + zcols) + " | train s | tokens/s |",
                  "|---" * (len(metrics) + len(zcols) + 4) + "|"]
    for x, ev in evs:
        cells = [fmt(*mean_se(ev.scores(m))) for m in metrics] + ([fmt(mean(ev.scores(m, ZERO_SHOT))) for m in head] if zero else [])
        sec.lines.append(f"| {x} | `{ev.short}` | " + " | ".join(cells)
                         + f" | {train_seconds(ev)} | {fmt_int(ev.metric('train_tokens_per_s'))} |")
    ref = evs[0][1]
    if RULE in ref.baselines:
        sec.lines.append(f"| *{BASELINE_NAMES[RULE]}* | | " + " | ".join(fmt(mean(ref.scores(m, RULE))) for m in metrics)
                         + " |" * (len(zcols) + 3))
    sec.lines += ["", "Values: mean ± standard error over the same test items for every run; zero-shot: each run's own base "
                  "model, prompted in its format, before fine-tuning."]
    if missing:
        sec.lines.append(f"Not run yet: {sweep.x} = {', '.join(map(str, missing))} (`{queue_hint}`).")
    sec.lines.append("")


def _points_figure(task: str, name: str, sweep, evs: list[tuple[Any, RunEvidence]], zero: bool, numeric: bool,
                   sec: Section, out: Path) -> None:
    """A panel per headline metric over the points (a line for a numeric setting, on a log
    axis when it spans 4x or more; bars otherwise), baselines beside it."""
    xs = [x for x, _ in evs]
    ref = evs[0][1]
    rule = RULE in ref.baselines
    panels = []
    for m in headline_metrics(task):
        series = {"fine-tuned": ([mean(ev.scores(m)) for _, ev in evs], [mean_se(ev.scores(m))[1] for _, ev in evs])}
        if zero:
            series[BASELINE_NAMES[ZERO_SHOT]] = ([mean(ev.scores(m, ZERO_SHOT)) for _, ev in evs], [float("nan")] * len(evs))
        panels.append(Panel(m, series, {BASELINE_NAMES[RULE]: mean(ref.scores(m, RULE))} if rule else {}))
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 4
    png = draw(out / f"{name}_{task}.png", title=f"{task}: {sweep.finding}", xlabel=sweep.x, xs=xs, panels=panels,
               footer=_footer(evs, sweep.x), kind="line" if numeric else "bar", log_x=log_x)
    sec.lines += [f"![{name} {task}]({png.name})", ""]


def _points_by_size(task: str, name: str, sweep, evs: list[tuple[Any, RunEvidence]], sec: Section, out: Path) -> None:
    """By molecule size: the same items in heavy-atom bins, one line per point (a figure per
    headline metric, a table of the graded metric); nothing when the items span one bin."""
    ref = evs[0][1]
    heavy = [int(it["heavy_atoms"]) for it in ref.items]
    bins = size_bins(heavy)
    if len(bins) <= 1:
        return
    labels = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in bins]
    members = [[i for i, h in enumerate(heavy) if lo <= h <= hi] for lo, hi in bins]
    size_panels = []
    for m in headline_metrics(task):
        series = {}
        for x, ev in evs:
            vals = ev.scores(m)
            series[f"{sweep.x}={x}"] = ([mean([vals[i] for i in idx]) for idx in members],
                                        [mean_se([vals[i] for i in idx])[1] for idx in members])
        size_panels.append(Panel(m, series))
    png = draw(out / f"{name}_{task}_by_size.png", title=f"{task}: by molecule size ({sweep.x})",
               xlabel="heavy atoms (n items)", xs=[f"{lab}\n(n={len(idx)})" for lab, idx in zip(labels, members)],
               panels=size_panels, footer=_footer(evs, sweep.x))
    graded = get_task(task).graded_metric or get_task(task).primary_metric
    xs = [x for x, _ in evs]
    sec.lines += [f"By molecule size ({graded}):", "", "| heavy atoms | n | " + " | ".join(f"{sweep.x}={x}" for x in xs) + " |",
                  "|---" * (len(xs) + 2) + "|"]
    for lab, idx in zip(labels, members):
        sec.lines.append(f"| {lab} | {len(idx)} | " + " | ".join(fmt(mean([ev.scores(graded)[i] for i in idx])) for _, ev in evs) + " |")
    sec.lines += ["", f"![{name} {task} by size]({png.name})", ""]


def _points_verdict(task: str, sweep, evs: list[tuple[Any, RunEvidence]], numeric: bool) -> Verdict:
    """A trend over a numeric setting, the sweep's expected point against the others, or the
    spread between the points; "not run" with a single point."""
    if len(evs) < 2:
        return Verdict(task, "not run", f"only {sweep.x} = {evs[0][0]} has a run: nothing to compare yet")
    if numeric:
        return trend_verdict(task, evs, sweep.x)
    if sweep.expect is not None and sweep.expect in dict(evs):
        return claim_verdict(task, evs, sweep.x, sweep.expect)
    return spread_verdict(task, evs, sweep.x)


def _points_block(task: str, sweeps: SweepFile, name: str, evs: list[tuple[Any, RunEvidence]], missing: list[Any],
                  sec: Section, out: Path, queue_hint: str) -> None:
    """A sweep over the values of one setting (`sweep.x`): the table (`_points_table`), the
    figure (`_points_figure`), the same by molecule size (`_points_by_size`), the verdict."""
    sweep = sweeps.sweeps[name]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in evs)
    if numeric:
        evs = sorted(evs, key=lambda p: p[0])
    # The zero-shot baseline belongs to each run: another base model or another prompt
    # format is another zero-shot model. The rule-based tool is the same for every point.
    zero = all(ZERO_SHOT in ev.baselines for _, ev in evs)
    _points_table(task, sweep, evs, missing, zero, sec, queue_hint)
    _points_figure(task, name, sweep, evs, zero, numeric, sec, out)
    _points_by_size(task, name, sweep, evs, sec, out)
    sec.verdicts.append(_points_verdict(task, sweep, evs, numeric))


def _run_label(p) -> str:
    return f"{p.data.n_train} examples, {p.train.epochs:g} epochs, {p.train.lr_scheduler} learning rate"


def sweep_section(name: str, sweeps: SweepFile, raw: dict, evidence: Evidence, out: Path,
                  sweeps_path: Path | str = DEFAULT_SWEEPS) -> Section:
    sweep = sweeps.sweeps[name]
    other_file = Path(sweeps_path).name != DEFAULT_SWEEPS.name
    queue_hint = f"seqtune sweep queue {name}" + (f" --sweeps {sweeps_path}" if other_file else "")
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
            x = point.get(sweep.x, i) if sweep.x not in ("epoch", "baseline", "train_hours") else i
            if sweep.x == "train_hours":
                x = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in point.items()) or "reference"
            if ev is None:
                missing.append(_run_label(p) if sweep.x == "epoch" else x)
            else:
                found.append((x, ev, p))
        if not found:
            sec.lines += [f"No run of this configuration yet: `{queue_hint} && dvc queue start -j 1`.", ""]
            sec.verdicts.append(Verdict(task, "not run", "no matching run yet"))
            continue
        sec.runs |= {ev.run_id for _, ev, _ in found}
        x, ev, p = found[0]
        if sweep.x == "baseline":
            sec.lines += [f"Run `{ev.short}` ({p.data.n_train} examples, {p.train.epochs:g} epochs, {p.data.format} format, "
                          f"{p.base_model.name}), {len(ev.items)} test items:", ""]
            _baseline_block(task, ev, sec)
        elif sweep.x == "train_hours":
            _hours_block(task, found, sec, out)
            if missing:
                sec.lines += [f"Not run yet: {'; '.join(map(str, missing))} (`{queue_hint}`).", ""]
        elif sweep.x == "epoch":
            _epoch_block(task, [EpochCurve(_run_label(p), ev, p.train.val_size) for _, ev, p in found], sec, out)
            if missing:
                sec.lines += [f"Not run yet: {'; '.join(missing)} (`{queue_hint}`).", ""]
        else:
            _points_block(task, sweeps, name, [(x, ev) for x, ev, _ in found], missing, sec, out, queue_hint)
        sec.lines += [f"**{sec.verdicts[-1].status}**: {sec.verdicts[-1].text}", ""]
    return sec


# ---------------------------------------------------------------------------------------
# the report


def _setup_table(sweeps: SweepFile) -> list[str]:
    lines = ["| setting (every point, unless its sweep varies it) | value |", "|---|---|"]
    lines += [f"| `{k}` | {', '.join(map(str, v)) if isinstance(v, list) else v} |" for k, v in sweeps.common.items()]
    return lines + [""]


def _write_records(records: Path | str | None, loaded: list[RunEvidence]) -> None:
    """A record of each run the report loaded, into `records` (None: none)."""
    if records is not None:
        for ev in loaded:
            write_record(records, ev)
        log.info("recorded %d runs in %s", len(loaded), records)


def _intro(used: set[str], loaded: list[RunEvidence], sweeps_path: Path | str, out: Path,
           records: Path | str | None) -> list[str]:
    """The report's opening: when, by which command and from which runs it was made, and how
    to read a difference."""
    used_records = sum(isinstance(ev.row.get(RECORD_COLUMN), str) for ev in loaded)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "seqtune report"  # as a reader would rerun it
    command += "" if Path(sweeps_path).name == DEFAULT_SWEEPS.name else f" --sweeps {sweeps_path}"
    command += "" if out == REPORTS else f" --out {out}"
    seconds = sum(ev.metric("train_runtime", 0.0) for ev in loaded)
    resumed = any(ev.tag(RESUMED_TAG) for ev in loaded)
    source = (f"the MLflow store ({len(used) - used_records}) and the run records in `{records}/` ({used_records})"
              if used_records else "the MLflow store")
    return [
        "# seqtune findings",
        "",
        f"Generated {now} by `{command}` from {len(used)} training run{'' if len(used) == 1 else 's'}, "
        f"read from {source}, "
        f"for the sweeps in `{shown(sweeps_path)}` ({'at least ' if resumed else ''}{seconds / 3600:.1f} h of training "
        f"in the runs used{'; resumed runs count only the time after the resume' if resumed else ''}). "
        "Each table row is one run (MLflow run id); each figure names its runs. Regenerate with the same command: "
        f"it reads the store and the records, so a fresh clone regenerates this report, and a new run is compared "
        "item by item with the recorded ones.",
        "",
        "A difference counts when it exceeds two standard errors of the paired difference over the same test items "
        "(± values below are one standard error).",
        "",
    ]


def _summary(sections: list[Section]) -> list[str]:
    """The summary table: a row per verdict of every section."""
    parts = ["## Summary", "", "| sweep | claim | task | verdict | evidence |", "|---|---|---|---|---|"]
    for s in sections:
        for v in s.verdicts:
            parts.append(f"| [{s.name}](#{s.name}) | {s.finding} | {v.task} | **{v.status}** | {v.text} |")
    return parts


def main(*, params: Path | str = DEFAULT_PARAMS, sweeps_path: Path | str = DEFAULT_SWEEPS, out: Path | str = REPORTS,
         paper_sweeps: Path | str | None = None, records: Path | str | None = RECORDS) -> Path:
    """Write `out`/findings.md (+ PNGs) from every tracked run, and a record of each run it
    used into `records` (read back on the next report: None reads and writes none);
    returns the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = load_sweeps(sweeps_path, params)
    raw = read_yaml(params)
    runs = collect_runs(load_params(params), records)
    from_records = int(runs[RECORD_COLUMN].notna().sum()) if RECORD_COLUMN in runs else 0
    log.info("%d training runs: %d in the MLflow store, %d from run records", len(runs), len(runs) - from_records, from_records)
    evidence = Evidence(runs)
    sections = [sweep_section(name, sweeps, raw, evidence, out, sweeps_path) for name in sweeps.sweeps]
    used = set().union(*(s.runs for s in sections)) if sections else set()
    loaded = evidence.loaded()
    _write_records(records, loaded)
    parts = _intro(used, loaded, sweeps_path, out, records) + _summary(sections)
    parts += ["", "## What was run", "", *_setup_table(sweeps)]
    for s in sections:
        parts += s.lines
    if paper_sweeps and Path(paper_sweeps).is_file():
        from seqtune.experiments.cost import cost_section

        parts += cost_section(paper_sweeps, params=params, runs=runs)
    md = out / "findings.md"
    write_text(md, "\n".join(parts) + "\n")
    log.info("wrote %s", md)
    return md
