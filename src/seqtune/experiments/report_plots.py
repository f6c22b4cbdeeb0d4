"""The report's figures: one PNG per sweep and task, a panel per metric, baselines as lines.

    seqtune report           # draws these into reports/

Every figure names the runs it came from in its footer, so a PNG taken out of the report
still says where its numbers came from. Error bars are one standard error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqtune.pipeline.eval_plots import pyplot

BASELINE_STYLES = ("--", ":", "-.")
MAX_TICKS = 12
"""More numeric x values than this get matplotlib's own tick grid instead of one tick each."""


@dataclass
class Panel:
    """One metric's axes."""

    metric: str
    series: dict[str, tuple[list[float], list[float]]]
    """Label -> (values, standard errors; NaN where unknown), one per x."""
    baselines: dict[str, float] = field(default_factory=dict)
    """Label -> value, drawn as horizontal lines."""


@dataclass
class Curve:
    """One line of an x-y figure whose series do not share their x values."""

    xs: list[float]
    ys: list[float]
    end: tuple[float, float, float] | None = None
    """(x, y, standard error) of a separate final point (a run's test score), drawn as a star."""


def draw(path: Path, *, title: str, xlabel: str, xs: Sequence, panels: Sequence[Panel], footer: str,
         kind: str = "line", log_x: bool = False) -> Path:
    """`kind`: "line" (numeric or ordered x, one line per series) or "bar" (categories)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    positions = list(range(len(xs)))
    for ax, panel in zip(axes[0], panels):
        n = max(len(panel.series), 1)
        for j, (label, (values, errs)) in enumerate(panel.series.items()):
            yerr = [0.0 if e != e else e for e in errs]  # NaN: no error bar
            if kind == "bar":
                width = 0.8 / n
                at = [i + (j - (n - 1) / 2) * width for i in positions]
                bars = ax.bar(at, values, width, yerr=yerr, capsize=3, label=label)
                ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)  # a zero bar is otherwise invisible
            else:
                at = xs if not isinstance(xs[0], str) else positions
                ax.errorbar(at, values, yerr=yerr, marker="o", capsize=3, label=label)
        for (label, value), style in zip(panel.baselines.items(), BASELINE_STYLES):
            ax.axhline(value, linestyle=style, color="grey", label=f"{label} ({value:.3f})")
        if kind == "bar" or isinstance(xs[0], str):
            ax.set_xticks(positions, [str(x) for x in xs])
        else:
            if log_x:
                ax.set_xscale("log")
            if len(xs) <= MAX_TICKS:  # the points run, not a grid between them (30 epochs: matplotlib's grid)
                ax.set_xticks(list(xs), [str(x) for x in xs])
                # A log axis also labels minor ticks (2x10^2, 3x10^2, ...) over the points' labels.
                ax.minorticks_off()
        ax.set(xlabel=xlabel, ylabel=panel.metric, ylim=(-0.02, 1.05), title=panel.metric)
        ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, path, title, footer, bottom=0.05)


def draw_curves(path: Path, *, title: str, xlabel: str, panels: Sequence[tuple[str, dict[str, Curve]]], footer: str,
                baselines: Sequence[dict[str, float]] = ()) -> Path:
    """One axes per (metric, {label: Curve}); each curve its own x values (a run's training
    hours), its final point a star with an error bar, in the line's colour."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.4), squeeze=False)
    for k, (ax, (metric, curves)) in enumerate(zip(axes[0], panels)):
        for label, c in curves.items():
            (line,) = ax.plot(c.xs, c.ys, marker="o", label=label)
            if c.end is not None:
                x, y, se = c.end
                ax.errorbar([x], [y], yerr=[se], marker="*", markersize=11, capsize=3, color=line.get_color(), linestyle="none")
        for (label, value), style in zip((baselines[k] if k < len(baselines) else {}).items(), BASELINE_STYLES):
            ax.axhline(value, linestyle=style, color="grey", label=f"{label} ({value:.3f})")
        ax.set(xlabel=xlabel, ylabel=metric, ylim=(-0.02, 1.05), title=metric)
        ax.set_xlim(left=0)
        ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, path, title, footer, bottom=0.06)


def _save(plt, fig, path: Path, title: str, footer: str, *, bottom: float) -> Path:
    """Title, the grey footer that names the runs, and the PNG; `bottom` keeps the footer clear."""
    fig.suptitle(title, fontsize=11)
    fig.text(0.01, 0.01, footer, fontsize=7, color="dimgrey", wrap=True)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
