"""What a sweep will cost before it runs, from throughput measured in tracked runs.

    seqtune sweep cost all --sweeps sweeps/paper.yaml          # the method's scale
    seqtune sweep cost data_size --gpu-tflops 150 --sample 500

Per experiment and task: training tokens = examples x epochs x tokens per example. Tokens per
example is counted on a sample of the point's own data, made as its stages would make it
(molecule source and size limits, task labels, format, base model tokenizer:
`seqtune.experiments.sample_tokens`); when no sample can be made (source unreadable,
`--sample 0`), it is taken from a tracked run of the same task and format (tokens seen / examples / epochs, on
that run's molecules). The table's notes say which, for every number. Compute is
6 x parameters x tokens FLOPs (forward + backward of a dense decoder). Time "here" scales the
measured training throughput of this machine's runs by parameter count; time on a GPU is
compute / `--gpu-tflops`, an assumption (effective, not peak, bf16 FLOP/s) stated as one.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqtune.config import DEFAULT_PARAMS, read_yaml
from seqtune.experiments.sample_tokens import SAMPLE, Count, Sampler, Unsampled
from seqtune.experiments.sweeps import load_sweeps, plan, point_params, shown

log = logging.getLogger(__name__)

GPU_TFLOPS = 150.0
"""Default effective training throughput assumed for one current data-centre GPU (an H100
reaches ~990 TFLOP/s bf16 dense at peak; small models use a fraction of it)."""

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([mb])\b", re.IGNORECASE)


def model_params(name: str, measured: dict[str, float] | None = None) -> float | None:
    """Parameter count of base model `name`: measured (from a run) when known, else read off
    its name (`opt-1.3b`, `pythia-410m`, `smollm2-135m`), else None."""
    if measured and name in measured:
        return measured[name]
    m = _SIZE.search(name.rsplit("/", 1)[-1].replace("_", "-"))
    if not m:
        return None
    return float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6)


@dataclass
class Estimate:
    experiment: str
    points: str
    task: str
    model: str
    params: float | None
    examples: int
    epochs: float
    tokens_per_example: float | None
    source_run: str | None
    """Run that measured tokens per example (None: sampled, or nothing measured)."""
    counted_by: str | None = None
    """Base model whose tokenizer counted the tokens (the run's, or the sample's)."""
    sample: Count | None = None
    """The sample that counted tokens per example (None: a run did, or nothing)."""
    problem: str | None = None
    """Why nothing was measured (no sample and no run)."""

    @property
    def tokens(self) -> float | None:
        return None if self.tokens_per_example is None else self.examples * self.epochs * self.tokens_per_example

    @property
    def flops(self) -> float | None:
        return None if self.tokens is None or self.params is None else 6 * self.params * self.tokens


def _num(row, col: str) -> float | None:
    v = row.get(col)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def tokens_per_example(runs, task: str, fmt: str, model: str) -> tuple[float | None, str | None, str | None]:
    """(tokens per training example, run id, the model whose tokenizer counted them) from
    the newest run of `task` in format `fmt` that logged its token count: one of `model`
    when there is one, else of another model (another tokenizer: an approximation)."""
    if runs is None or runs.empty or "metrics.tokens_seen" not in runs:
        return None, None, None
    found: dict[bool, tuple[float, str, str]] = {}
    for _, row in runs.iterrows():  # newest first
        if row.get("tags.seqtune.task") != task or row.get("params.data.format") != fmt:
            continue
        seen, n, epochs = _num(row, "metrics.tokens_seen"), _num(row, "params.train_examples"), _num(row, "params.train.epochs")
        same = row.get("params.base_model.name") == model
        if seen and n and epochs and same not in found:
            found[same] = (seen / (n * epochs), row.run_id, str(row.get("params.base_model.name")))
    return found.get(True) or found.get(False) or (None, None, None)


def measured_params(runs) -> dict[str, float]:
    """Base model name -> parameter count, as training runs logged it."""
    if runs is None or runs.empty or "params.base_model.params" not in runs:
        return {}
    out = {}
    for _, row in runs.iterrows():
        if (n := _num(row, "params.base_model.params")) and isinstance(row.get("params.base_model.name"), str):
            out[row["params.base_model.name"]] = n
    return out


def measured_flops_per_s(runs) -> tuple[float | None, int]:
    """Median training FLOP/s of this store's full fine-tuning runs (6 x params x tokens/s),
    and how many runs it is the median of."""
    if runs is None or runs.empty or "metrics.train_tokens_per_s" not in runs:
        return None, 0
    rates, sizes = [], measured_params(runs)
    for _, row in runs.iterrows():
        tps, n = _num(row, "metrics.train_tokens_per_s"), model_params(str(row.get("params.base_model.name")), sizes)
        if tps and n and row.get("params.train.method") == "full":
            rates.append(6 * n * tps)
    if not rates:
        return None, 0
    rates.sort()
    return rates[len(rates) // 2], len(rates)


def estimate(names: Sequence[str], *, sweeps_path: Path | str, params: Path | str = DEFAULT_PARAMS, runs=None,
             sample: int | Sampler = SAMPLE) -> list[Estimate]:
    """One estimate per experiment and task of sweeps `names`. Tokens per example: counted on
    a sample of `sample` raw records of each point's data (a number, or a Sampler to share),
    else (0, or no sample possible) from the newest matching run in `runs`."""
    sweeps = load_sweeps(sweeps_path, params)
    raw = read_yaml(params)
    sizes = measured_params(runs)
    sampler = sample if isinstance(sample, Sampler) else Sampler(sample) if sample > 0 else None
    out = []
    for exp in plan(names, sweeps_path=sweeps_path, params=params):
        name, i = exp.points[0].rstrip("]").split("[")
        p = point_params(sweeps, name, int(i), raw)
        for task in exp.tasks:
            e = Estimate(exp.name, ", ".join(exp.points), task, p.base_model.name, model_params(p.base_model.name, sizes),
                         p.data.n_train, p.train.epochs, None, None)
            if sampler is not None:
                try:
                    e.sample = sampler.count(p, task)
                except Unsampled as err:
                    log.warning("%s %s: no sample (%s); tokens per example from a tracked run, if any", e.points, task, err)
                    e.problem = f"no sample: {err}"
                else:
                    e.tokens_per_example, e.counted_by, e.problem = e.sample.mean, e.sample.tokenizer, e.sample.problem
            if e.tokens_per_example is None:
                tpe, run_id, counted_by = tokens_per_example(runs, task, p.data.format, p.base_model.name)
                if tpe is not None:
                    e.tokens_per_example, e.source_run, e.counted_by, e.sample = tpe, run_id, counted_by, None
            out.append(e)
    return out


def _sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.2e}"


def _human(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "–"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _sample_labels(estimates: Sequence[Estimate]) -> dict[str, str]:
    """Sample description -> its label in the table (s1, s2, ...), in table order."""
    labels: dict[str, str] = {}
    for e in estimates:
        if e.sample is not None and e.tokens_per_example:
            labels.setdefault(e.sample.describe(), f"s{len(labels) + 1}")
    return labels


def _tpe_cell(e: Estimate, labels: dict[str, str]) -> str:
    """The tokens/example cell: the number, where it comes from, ≈ when another model's
    tokenizer counted it."""
    if not e.tokens_per_example:
        return f"not measured ({e.problem})" if e.problem else "not measured"
    if e.sample is None:
        where, value = f"`{e.source_run[:8]}`", f"{e.tokens_per_example:.1f}"
    else:
        long = f", {e.sample.too_long} over max_length" if e.sample.too_long else ""
        where, value = labels[e.sample.describe()] + long, f"{e.tokens_per_example:.1f} ± {e.sample.se:.1f}"
    if e.counted_by == e.model:
        return f"{value} ({where})"
    return f"≈ {value} ({where}, {e.counted_by})"  # another model's tokenizer counted them


def notes(estimates: Sequence[Estimate]) -> list[str]:
    """Where each tokens/example number comes from: one line per sample and per run."""
    lines = [f"- *{label}*: {text}; per row, the mean ± standard error of prompt + completion + EOS tokens in the "
             "row's format, counted by its base model's tokenizer (as training counts; examples over train.max_length "
             "left out, as training does)." for text, label in _sample_labels(estimates).items()]
    runs = {(e.source_run, e.counted_by) for e in estimates if e.sample is None and e.source_run and e.tokens_per_example}
    lines += [f"- `{run[:8]}`: tokens seen / examples / epochs of tracked run `{run}` ({by}), on that run's molecules, "
              "not this point's." for run, by in sorted(runs)]
    return ["Tokens per example:", "", *lines, ""] if lines else []


def table(estimates: Sequence[Estimate], here_flops: float | None, gpu_tflops: float = GPU_TFLOPS) -> list[str]:
    labels = _sample_labels(estimates)
    lines = ["| points | task | model | examples | epochs | tokens/example | train tokens | compute (FLOPs) | here | 1 GPU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    total_here = total_gpu = 0.0
    for e in estimates:
        here = e.flops / here_flops if e.flops and here_flops else None
        gpu = e.flops / (gpu_tflops * 1e12) if e.flops else None
        total_here += here or 0.0
        total_gpu += gpu or 0.0
        lines.append(f"| {e.points} | {e.task} | {e.model} | {e.examples:,} | {e.epochs:g} | {_tpe_cell(e, labels)} | "
                     f"{_sci(e.tokens)} | {_sci(e.flops)} | {_human(here)} | {_human(gpu)} |")
    if all(e.flops for e in estimates):
        # No throughput measured here: no total either (not "0 s").
        lines.append(f"| **all** | | | | | | | | **{_human(total_here if here_flops else None)}** | **{_human(total_gpu)}** |")
    else:
        lines.append("| **all** | | | | | | | | not every point measured | |")
    return lines


def cost_section(sweeps_path: Path | str, *, params: Path | str = DEFAULT_PARAMS, runs=None,
                 gpu_tflops: float = GPU_TFLOPS, sample: int | Sampler = SAMPLE) -> list[str]:
    """The report's cost section for every sweep in `sweeps_path`."""
    sweeps = load_sweeps(sweeps_path, params)
    estimates = estimate(list(sweeps.sweeps), sweeps_path=sweeps_path, params=params, runs=runs, sample=sample)
    here, n = measured_flops_per_s(runs)
    lines = [f"## Cost of the method's scale (`{shown(sweeps_path)}`)", "",
             "Estimated by `seqtune sweep cost all --sweeps " + shown(sweeps_path) + "`: training only (evaluation adds "
             "little). Tokens per example are counted on a sample of each point's own data (*s1*, *s2*, … below: its "
             "molecules, labels, format and tokenizer), or, where no sample could be made, taken from the run named (on "
             "that run's molecules); ≈ marks a count by another model's tokenizer."]
    if here:
        lines.append(f"*here*: this machine's measured training throughput, {here / 1e12:.3f} TFLOP/s "
                     f"(median of {n} full fine-tuning runs), scaled by parameter count.")
    lines += [f"*1 GPU*: at an assumed {gpu_tflops:g} TFLOP/s effective (bf16); not measured here, no GPU was available.", ""]
    return lines + table(estimates, here, gpu_tflops) + [""] + notes(estimates)
