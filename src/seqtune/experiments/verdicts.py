"""Verdicts: what a sweep's runs say about its claim, in words and numbers.

    seqtune report          # states one verdict per sweep and task in reports/findings.md

A difference counts only beyond NOISE_SE standard errors of the *paired* difference over the
same test items (every point is scored on the same ones); a contradiction is stated as
plainly as a confirmation. Each verdict's text carries the numbers it rests on. Pure
functions of run evidence, so every rule is tested on hand-made scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seqtune.experiments.evidence import NOISE_SE, RunEvidence, bound_se, change, mean, paired
from seqtune.tasks import get_task
from seqtune.tracking import RESUMED_TAG


@dataclass
class Verdict:
    task: str
    status: str
    """supported | contradicted | partly supported | not shown | not run."""
    text: str


def fmt(value: float, se: float | None = None) -> str:
    if value != value:
        return "–"
    return f"{value:.3f}" if se is None or se != se else f"{value:.3f} ± {se:.3f}"


def fmt_int(value: float) -> str:
    return "–" if value != value else f"{value:.0f}"


def train_seconds(ev: RunEvidence) -> str:
    """Training seconds; a resumed run's Trainer counts only the time after its last resume."""
    steps = ev.tag(RESUMED_TAG)
    return fmt_int(ev.metric("train_runtime")) + (f" (after resume at step {steps.split(',')[-1]})" if steps else "")


def fmt_diff(d: float, se: float) -> str:
    return f"{d:+.3f} ± {se:.3f}"


def headline_metrics(task: str) -> list[str]:
    t = get_task(task)
    return [m for m in (t.primary_metric, t.graded_metric) if m]


def trend_verdict(task: str, points: list[tuple[Any, RunEvidence]], what: str) -> Verdict:
    """Does the claim "more of x helps" hold between the smallest and the largest x
    (`points` in x order)? Every point's mean is listed, so a dip between them shows."""
    primary, graded = get_task(task).primary_metric, get_task(task).graded_metric
    (x0, a), (x1, b) = points[0], points[-1]
    parts, changes = [], {}
    for m in [primary] + ([graded] if graded else []):
        d, se = paired(a.scores(m), b.scores(m))
        changes[m] = change(d, se)
        parts.append(f"{m} {fmt(mean(a.scores(m)))} → {fmt(mean(b.scores(m)))} ({fmt_diff(d, se)}, {changes[m]})")
    text = f"{what} {x0} → {x1}: " + "; ".join(parts) + "."
    if len(points) > 2:
        text += f" {primary} at each {what}: " + ", ".join(f"{x} {fmt(mean(ev.scores(primary)))}" for x, ev in points) + "."
    if changes[primary] == "rises":
        return Verdict(task, "supported", text)
    if changes[primary] == "falls":
        return Verdict(task, "contradicted", text)
    if graded and changes[graded] == "rises":
        return Verdict(task, "partly supported", text + f" Only the graded {graded} moves beyond noise.")
    if graded and changes[graded] == "falls":
        return Verdict(task, "contradicted", text + f" The graded {graded} falls.")
    return Verdict(task, "not shown", text + " No change beyond noise at this scale.")


def _spread(points: list[tuple[Any, RunEvidence]], metric: str) -> tuple[str, str]:
    """(best vs worst on `metric`, paired: 'rises' when they differ beyond noise; its text)."""
    ranked = sorted(points, key=lambda p: mean(p[1].scores(metric)), reverse=True)
    (best_x, best), (worst_x, worst) = ranked[0], ranked[-1]
    d, se = paired(worst.scores(metric), best.scores(metric))
    ref_x, ref = points[0]
    vs_ref = "; ".join(f"{x} {fmt_diff(*paired(ref.scores(metric), ev.scores(metric)))}" for x, ev in points[1:])
    text = (f"on {metric}, best {best_x} ({fmt(mean(best.scores(metric)))}), worst {worst_x} "
            f"({fmt(mean(worst.scores(metric)))}): {fmt_diff(d, se)} paired; against {ref_x}: {vs_ref}")
    return change(d, se), text


def spread_verdict(task: str, points: list[tuple[Any, RunEvidence]], what: str) -> Verdict:
    """Does the choice among categories matter? Best vs worst, paired, on the primary metric;
    where the primary does not separate them (near zero at small scale), on the graded one,
    which then supports the claim only partly."""
    t = get_task(task)
    secs = "Train s: " + ", ".join(f"{x} {train_seconds(ev)}" for x, ev in points) + "."
    moved, text = _spread(points, t.primary_metric)
    if moved == "rises":
        return Verdict(task, "supported", f"{what} matters: {text}. {secs}")
    if t.graded_metric:
        graded_moved, graded_text = _spread(points, t.graded_metric)
        if graded_moved == "rises":
            return Verdict(task, "partly supported", f"{what} matters {graded_text}; {t.primary_metric} does not "
                                                     f"separate them beyond noise ({text}). {secs}")
        text += f"; {graded_text}"
    return Verdict(task, "not shown", f"{what}: no difference beyond noise, {text}. {secs}")


def claim_verdict(task: str, points: list[tuple[Any, RunEvidence]], what: str, expect: Any) -> Verdict:
    """Does the claimed winner `expect` beat every other point, paired? Against each other
    point the primary metric decides where it separates the two; only where it does not does
    the graded metric speak, and then the claim is at most partly supported. A claimed
    winner that loses to any point beyond noise contradicts the claim, whatever the other
    metric does (which the text then reports)."""
    t = get_task(task)
    won = dict(points)[expect]
    others = [(x, ev) for x, ev in points if x != expect]
    secs = "Train s: " + ", ".join(f"{x} {train_seconds(ev)}" for x, ev in points) + "."

    def against(metric: str, ev: RunEvidence) -> tuple[str, str]:
        d, se = paired(ev.scores(metric), won.scores(metric))
        return change(d, se), f"{fmt(mean(ev.scores(metric)))} → {fmt(mean(won.scores(metric)))} ({fmt_diff(d, se)})"

    outcomes, parts = {}, []
    for x, ev in others:
        primary, primary_text = against(t.primary_metric, ev)
        graded, graded_text = against(t.graded_metric, ev) if t.graded_metric else ("flat", "")
        outcomes[x] = (primary, graded)
        parts.append(f"against {x}: {t.primary_metric} {primary_text}"
                     + (f", {t.graded_metric} {graded_text}" if graded_text else ""))
    both = "; ".join(parts)
    lost = [x for x, (p, _) in outcomes.items() if p == "falls"]
    if lost:
        graded_up = [x for x in lost if outcomes[x][1] == "rises"]
        tail = (f" The graded {t.graded_metric} rises against {', '.join(map(str, graded_up))}, but the primary "
                f"metric decides.") if graded_up else ""
        return Verdict(task, "contradicted", f"{what} = {expect} loses to {', '.join(map(str, lost))}: {both}.{tail} {secs}")
    if all(p == "rises" for p, _ in outcomes.values()):
        return Verdict(task, "supported", f"{what} = {expect} wins: {both}. {secs}")
    undecided = {x: g for x, (p, g) in outcomes.items() if p != "rises"}
    if "falls" in undecided.values():
        lost = [x for x, g in undecided.items() if g == "falls"]
        return Verdict(task, "contradicted", f"{what} = {expect} loses on the graded metric to "
                                             f"{', '.join(map(str, lost))}: {both}. {secs}")
    if all(g == "rises" for g in undecided.values()):
        return Verdict(task, "partly supported", f"{what} = {expect} wins, on the graded metric only against "
                                                 f"{', '.join(map(str, undecided))}: {both}. {secs}")
    return Verdict(task, "not shown", f"{what} = {expect}: no difference beyond noise against "
                                      f"{', '.join(str(x) for x, g in undecided.items() if g != 'rises')}: {both}. {secs}")


FLATTEN_FROM = (15, 30)
"""Epochs at which the method saw returns flatten (~20-30), with some slack below."""
LONG_RUN = 12
"""A run of fewer epochs cannot show a flattening at the method's epochs."""


@dataclass
class EpochCurve:
    """One run's validation metrics after every epoch (means over `n_val` items)."""

    label: str
    ev: RunEvidence
    n_val: int

    def values(self, metric: str) -> dict[int, float]:
        return self.ev.history.get(f"val_{metric}", {})

    @property
    def epochs(self) -> list[int]:
        return sorted(set().union(*(c.keys() for c in self.ev.history.values()))) if self.ev.history else []


def plateau_epoch(curve: dict[int, float], n_val: int) -> tuple[int, int]:
    """(the first epoch whose value is within noise of the curve's best, the best epoch).
    Noise: NOISE_SE times the largest standard error a [0, 1] mean of `n_val` items can have
    at the best value (the curve keeps means only)."""
    best_epoch = max(curve, key=lambda e: (curve[e], -e))
    floor = curve[best_epoch] - NOISE_SE * bound_se(curve[best_epoch], n_val)
    return min(e for e, v in curve.items() if v >= floor), best_epoch


def _curve_text(task: str, c: EpochCurve) -> tuple[str, dict[str, str]]:
    """'metric epoch 1 → N: a → b (d ± se, rises; ...)' for the headline metrics of one curve."""
    epochs = c.epochs
    first, last = epochs[0], epochs[-1]
    parts, moved = [], {}
    for m in headline_metrics(task):
        v = c.values(m)
        a, b = v.get(first, float("nan")), v.get(last, float("nan"))
        se = math.hypot(bound_se(a, c.n_val), bound_se(b, c.n_val))
        moved[m] = change(b - a, se)
        part = f"{m} epoch {first} → {last}: {fmt(a)} → {fmt(b)} ({fmt_diff(b - a, se)}, {moved[m]}"
        if len(epochs) >= LONG_RUN and v:
            k, best = plateau_epoch(v, c.n_val)
            part += f"; within noise of its best ({fmt(v[best])} at epoch {best}) from epoch {k}"
            if change(b - v[best], math.hypot(bound_se(b, c.n_val), bound_se(v[best], c.n_val))) == "falls":
                part += ", then falls"
        parts.append(part + ")")
    return "; ".join(parts), moved


def epoch_verdict(task: str, curves: list[EpochCurve]) -> Verdict:
    """Do more epochs help, and do returns flatten after ~20-30 epochs? Judged on the longest
    run: the primary metric's first-to-last change decides "help"; where the run is long
    enough, the epoch from which it stays within noise of its best decides "flatten"."""
    t = get_task(task)
    primary = t.primary_metric
    longest = max(curves, key=lambda c: len(c.epochs))
    texts = []
    for c in sorted(curves, key=lambda c: len(c.epochs), reverse=True):
        text, moved = _curve_text(task, c)
        texts.append(f"{c.label} (run `{c.ev.short}`): {text}")
        if c is longest:
            moved_longest = moved
    text = ". ".join(texts) + (f". ± is an upper bound on the standard error of a [0, 1] mean over {longest.n_val} items "
                               "(the per-epoch curve keeps means only).")
    rises = moved_longest[primary] == "rises"
    status = ("supported" if rises else "contradicted" if moved_longest[primary] == "falls"
              else "partly supported" if "rises" in moved_longest.values() else "not shown")
    last = longest.epochs[-1]
    if len(longest.epochs) < LONG_RUN:
        return Verdict(task, status, text + f" Flattening after 20-30 epochs cannot show in {last} epochs: "
                                            "that needs a longer run (sweeps/paper.yaml has a 30-epoch one).")
    # A rise to a peak and a fall back (overfitting) leaves first-to-last flat: judge the peak.
    for m in headline_metrics(task):
        v = longest.values(m)
        k, best = plateau_epoch(v, longest.n_val)
        first, end = v[longest.epochs[0]], v[last]
        up = change(v[best] - first, math.hypot(bound_se(first, longest.n_val), bound_se(v[best], longest.n_val)))
        down = change(end - v[best], math.hypot(bound_se(end, longest.n_val), bound_se(v[best], longest.n_val)))
        if up == "rises" and down == "falls":
            return Verdict(task, "partly supported", text + f" More epochs help until epoch {best} ({m} {fmt(v[best])}), "
                                                            f"then hurt: {fmt(end)} at epoch {last} (overfitting at this data size).")
    if status not in ("supported", "partly supported"):
        return Verdict(task, status, text)
    # Flattening, on the metric that moved (the graded one when the primary stays at zero).
    metric = primary if rises else (t.graded_metric or primary)
    k, _ = plateau_epoch(longest.values(metric), longest.n_val)
    if k > 0.8 * last:
        return Verdict(task, "partly supported", text + f" More epochs help, but {metric} is still rising at epoch {last}: "
                                                        "no flattening within this run.")
    if k < FLATTEN_FROM[0]:
        return Verdict(task, "partly supported", text + f" More epochs help, but returns flatten from epoch {k} on {metric}, "
                                                        f"earlier than the method's ~20-30 (at this run's data size).")
    return Verdict(task, status, text + f" Returns flatten from epoch {k} on {metric}, as the method reports (~20-30).")


def verified_verdict(task: str, ev: RunEvidence) -> Verdict:
    """Do OPSIN-verified beams beat greedy decoding of the same model on the same items, and is
    `verified: true` always right? Precision below 1.0 contradicts the claim whatever the lift."""
    from seqtune.pipeline.eval_keys import GREEDY

    primary = get_task(task).primary_metric
    greedy, chosen = ev.scores(primary, GREEDY), ev.scores(primary)
    d, se = paired(greedy, chosen)
    flagged = [float(it[primary]) for it in ev.items if it.get("verified")]
    precision = mean(flagged) if flagged else float("nan")
    text = (f"greedy → verified beams: {primary} {fmt(mean(greedy))} → {fmt(mean(chosen))} ({fmt_diff(d, se)}); "
            f"`verified: true` on {len(flagged)} of {len(chosen)} items, of which {fmt(precision)} are right (precision).")
    fast, slow = ev.metric("eval.greedy.items_per_s"), ev.metric("eval.items_per_s")
    if fast > 0 and slow > 0:  # runs evaluated before the greedy pass was timed have no cost
        text += f" Cost: {fast / slow:.1f}× greedy's decoding time ({slow:.2f} vs {fast:.2f} items/s, batch {fmt_int(ev.metric('eval.batch_size'))})."
    if flagged and precision < 1.0:
        return Verdict(task, "contradicted", text + " A verified answer that is wrong breaks the promise of the flag.")
    status = {"rises": "supported", "falls": "contradicted"}.get(change(d, se), "not shown")
    return Verdict(task, status, text + (" No lift beyond noise." if status == "not shown" else ""))
