"""The evaluate stage's PNGs: a model's metrics by epoch, by molecule size and on real molecules by band.

    seqtune evaluate smiles2iupac        # draws these into plots/<task>/png/

`pyplot()` is matplotlib without a display, for these and for the report's figures
(`seqtune.experiments.report_plots`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def png_by_epoch(path: Path, epochs: list[dict], primary: str, baselines: Mapping[str, float]) -> None:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [r["epoch"] for r in epochs]
    for key in sorted({k for r in epochs for k in r if k.startswith("val_")}):
        if key.endswith("_len"):
            continue  # lengths are not on the [0, 1] scale
        ax.plot(xs, [r.get(key) for r in epochs], marker="o", lw=2 if key == f"val_{primary}" else 1, label=key)
    for (name, value), style in zip(baselines.items(), ("--", ":")):
        ax.axhline(value, ls=style, color="grey", label=f"{name} ({value:.3f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="metric (validation subset)", title=f"{primary} by epoch", ylim=(-0.02, 1.02))
    for key in ("loss", "eval_loss"):
        if any(key in r for r in epochs):
            ax_loss.plot(xs, [r.get(key) for r in epochs], marker="o", label=key)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss by epoch")
    if not epochs:
        ax.text(0.5, 0.5, "no per-epoch metrics recorded", ha="center", transform=ax.transAxes)
    for a in (ax, ax_loss):
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def png_by_size(path: Path, rows: list[dict], primary: str, series: Sequence[str]) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        key = primary if name == "model" else f"{name}.{primary}"
        bars = ax.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(rows))], [r[key] for r in rows],
                      width=width, label="fine-tuned" if name == "model" else name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)  # a zero bar is otherwise invisible
    ax.set_xticks(range(len(rows)), [f"{r['heavy_atoms']}\n(n={r['n']})" for r in rows])
    ax.set(xlabel="heavy atoms", ylabel=primary, title=f"{primary} by molecule size", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def png_real(path: Path, bands: list[dict], primary: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar(range(len(bands)), [b[primary] for b in bands], color="tab:green")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(bands)), [f"{b['band']}\n(n={b['n']})" for b in bands])
    ax.set(xlabel="heavy atoms (real molecules, never trained on)", ylabel=primary,
           title=f"{primary} on real molecules by size", ylim=(0, 1.05))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
