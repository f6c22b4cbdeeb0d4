"""Training-step throughput and MFU: batch size, eager vs `torch.compile`, fp32 vs bf16, and
full fine-tuning vs frozen lower layers vs LoRA, on this CPU.

    .venv/bin/python bench/train_step.py                          # SmolLM2-135M, batch 8/16/32/64, eager and compiled
    .venv/bin/python bench/train_step.py --batch-sizes 32 --no-compile
    .venv/bin/python bench/train_step.py --batch-sizes 32 --no-compile --precisions fp32,bf16    # does bf16 pay here
    .venv/bin/python bench/train_step.py --batch-sizes 32 --no-compile --methods full,frozen:15,lora

One step is what the train stage runs per batch: completion-only loss
(`seqtune.pipeline.completion_loss`), backward, fused AdamW (the Trainer's default optimizer),
in bf16 autocast where the CPU runs bf16 natively (else fp32: `precision: auto`'s verdict,
`seqtune.inference.precision`), or in each of `--precisions fp32,bf16`: the training half of
"does bf16 pay on this CPU" (`bench/cpu_bf16.py` has the matmuls and decoding). `--methods`:
`full` (every weight trains), `frozen:N` (`train.freeze_layers: N`: embeddings and the lower N
decoder layers frozen, `seqtune.pipeline.frozen_layers`), `lora` (`train.method: lora` with
params.yaml's `train.lora`).

Batches are random token ids with lengths drawn like the specialist data (14-44 tokens, the
last 9 the completion), a new length every step, so kernels see the variety of shapes
length-grouped training gives them; every configuration sees the same lengths. Tokens/s counts
every position of a batch (no padding here). The first steps of each configuration are
warm-up (oneDNN kernel selection, compilation) and are timed apart.

MFU is counted on the FLOPs a step executes, not on 6 x parameters: torch's `FlopCounterMode`
counts the matmuls (and attention, where it knows the kernel) of one forward + backward per
distinct length at batch 1, scaled to the batch (a matmul's FLOPs are linear in the batch). So
the LM head counts only on the completion positions it runs on, a frozen layer counts its
forward only, and LoRA counts no weight gradients of the base. The peak is a 2048^3 matmul in
the step's own arithmetic (fp32, or bf16 under autocast), best of 5, measured before the
rounds (`common.matmul_peak`).

Each batch size runs `--repeats` alternating rounds (each precision, method and eager /
compiled in turn: a fresh model each run), so a burst of other work slows a round of each
rather than one side; the median and min-max of each are printed and written, with the ratios
round by round, to reports/bench/train_step.json (`common.write_result`). Prints the 1-minute
load average before and after each configuration: other work on the cores changes the
figures 2-8x.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import base_model, matmul_peak, spread, write_result  # noqa: E402

COMPLETION = 9
"""Completion tokens per sequence (the last positions): the specialist data's typical name."""


def lengths(steps: int) -> list[int]:
    """The sequence length of each step: the same draw for every configuration."""
    rng = random.Random(0)
    return [rng.randint(14, 44) for _ in range(steps)]


def build(base: Path, method: str) -> torch.nn.Module:
    """The base model in fp32, training mode, with `method` applied."""
    from transformers import AutoModelForCausalLM

    from seqtune.config import TrainConfig
    from seqtune.pipeline.frozen_layers import freeze_lower_layers
    from seqtune.pipeline.train import apply_lora

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if method == "lora":
        model = apply_lora(model, TrainConfig().lora)
    elif method.startswith("frozen:"):
        freeze_lower_layers(model, int(method.split(":", 1)[1]))
    model.train()
    return model


def batch_of(model: torch.nn.Module, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    # ids within the vocabulary (all of SmolLM2's and Gemma's first 40,000; `tiny` has ~100 tokens)
    high = min(40_000, model.config.vocab_size)
    ids = torch.randint(min(100, high - 1), high, (batch, length))
    labels = ids.clone()
    labels[:, : length - COMPLETION] = -100
    return ids, labels


def run(base: Path, batch: int, method: str, compiled: bool, steps: int, warmup: int, bf16: bool) -> tuple[float, float]:
    """(warm-up seconds, tokens/s over the timed steps) for one configuration."""
    from seqtune.pipeline.completion_loss import completion_loss

    model = build(base, method)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    if compiled:
        # dynamic: the sequence length changes every batch; static shapes would recompile each time.
        model.model = torch.compile(model.model, dynamic=True)

    def step(length: int) -> int:
        ids, labels = batch_of(model, batch, length)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = completion_loss(model, ids, torch.ones_like(ids), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return batch * length

    t0 = time.perf_counter()
    for length in lengths(warmup):
        step(length)
    warm = time.perf_counter() - t0
    t0, tokens = time.perf_counter(), 0
    for length in lengths(steps):
        tokens += step(length)
    return warm, tokens / (time.perf_counter() - t0)


def executed_flops_per_token(base: Path, method: str, steps: int) -> float:
    """Matmul FLOPs one forward + backward executes per token, over the timed steps' lengths."""
    from torch.utils.flop_counter import FlopCounterMode

    from seqtune.pipeline.completion_loss import completion_loss

    model = build(base, method)
    total, tokens = 0, 0
    for length, n in Counter(lengths(steps)).items():
        ids, labels = batch_of(model, 1, length)
        counter = FlopCounterMode(display=False)
        with counter:
            completion_loss(model, ids, torch.ones_like(ids), labels).backward()
        model.zero_grad(set_to_none=True)
        total += counter.get_total_flops() * n
        tokens += length * n
    return total / tokens


def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if bad := [x for x in items if not allowed(x)]:
        sys.exit(f"{what}: unknown {bad}")
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m | gemma3-270m | tiny | a local path")
    ap.add_argument("--batch-sizes", default="8,16,32,64")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds per batch size")
    ap.add_argument("--precisions", default="auto",
                    help="auto (the pipeline's verdict on this CPU) or a comma list of fp32, bf16 (autocast)")
    ap.add_argument("--methods", default="full", help="comma list of full, frozen:N (N lower layers frozen), lora")
    a = ap.parse_args()

    import tempfile

    from seqtune.inference.devices import native_bf16, pick_device

    verdict = native_bf16(pick_device())
    precisions = (["bf16" if verdict else "fp32"] if a.precisions == "auto"
                  else parse_list(a.precisions, lambda p: p in ("fp32", "bf16"), "--precisions"))
    methods = parse_list(a.methods, lambda m: m in ("full", "lora") or (m.startswith("frozen:") and m[7:].isdigit()),
                         "--methods")
    compiles = (False,) if a.no_compile else (False, True)
    print(f"model {a.model}, {' vs '.join(precisions)} (auto's verdict here: {'bf16' if verdict else 'fp32'}), "
          f"methods {', '.join(methods)}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")

    def prefix(prec: str | None, method: str | None) -> str:
        # A single precision and method keep the keys a plain run always wrote; more name theirs.
        parts = ([prec] if prec and len(precisions) > 1 else []) + \
            ([method.replace(":", "_")] if method and len(methods) > 1 else [])
        return "".join(f"{x}." for x in parts)

    def key(prec: str, method: str, compiled: bool) -> str:
        return prefix(prec, method) + ("compiled" if compiled else "eager")

    peaks = {p: matmul_peak(torch.bfloat16 if p == "bf16" else torch.float32) for p in precisions}
    print("matmul peak (2048^3, best of 5): " + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()))
    with tempfile.TemporaryDirectory() as tmp:
        base = base_model(a.model, Path(tmp))
        flops = {m: executed_flops_per_token(base, m, a.steps) for m in methods}
        print("executed FLOPs per token (forward + backward): "
              + ", ".join(f"{m} {v / 1e6:.0f}M" for m, v in flops.items()))
        rates: dict[tuple[int, str, str, bool], list[float]] = {}
        warms: dict[tuple[int, str, str, bool], list[float]] = {}
        for batch in (int(b) for b in a.batch_sizes.split(",")):
            for r in range(a.repeats):
                for prec in precisions:
                    for method in methods:
                        for compiled in compiles:
                            before = os.getloadavg()[0]
                            warm, rate = run(base, batch, method, compiled, a.steps, a.warmup, prec == "bf16")
                            rates.setdefault((batch, prec, method, compiled), []).append(rate)
                            warms.setdefault((batch, prec, method, compiled), []).append(warm)
                            print(f"batch {batch:3d} {key(prec, method, compiled):24s} round {r + 1}: {rate:7.1f} "
                                  f"tokens/s (warm-up {a.warmup} steps {warm:5.1f} s); "
                                  f"load {before:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    figures: dict = {"matmul_peak_gflop_per_s": {p: round(v / 1e9, 1) for p, v in peaks.items()},
                     "executed_mflop_per_token": {m.replace(":", "_"): round(v / 1e6, 1) for m, v in flops.items()}}
    for (batch, prec, method, compiled), rs in rates.items():
        k = f"batch_{batch}.{key(prec, method, compiled)}"
        mfu = [r * flops[method] / peaks[prec] for r in rs]
        figures[f"{k}_tokens_per_s"] = spread(rs)
        figures[f"{k}_warmup_s"] = spread(warms[batch, prec, method, compiled])
        figures[f"{k}_mfu"] = spread(mfu)
        print(f"batch {batch} {key(prec, method, compiled)}: {statistics.median(rs):.1f} tokens/s "
              f"({min(rs):.1f}-{max(rs):.1f}, {len(rs)} rounds), MFU {statistics.median(mfu):.1%} of the {prec} peak")

    def ratios(name: str, num: tuple, den: tuple, batch: int, label: str) -> None:
        if num in rates and den in rates:
            rs = [x / y for x, y in zip(rates[num], rates[den])]
            figures[f"batch_{batch}.{name}"] = spread(rs)
            print(f"batch {batch}: {label} {statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f}, round by round)")

    for (batch, prec, method, compiled) in list(rates):
        side = "compiled" if compiled else "eager"
        if compiled:
            ratios(f"{prefix(prec, method)}compiled_over_eager", (batch, prec, method, True),
                   (batch, prec, method, False), batch, f"{prec} {method}: torch.compile / eager tokens/s")
        if prec == "bf16" and len(precisions) > 1:
            ratios(f"{prefix(None, method)}{side}_bf16_over_fp32", (batch, "bf16", method, compiled),
                   (batch, "fp32", method, compiled), batch, f"{method} {side}: bf16 autocast / fp32 tokens/s")
        if method != "full" and "full" in methods:
            ratios(f"{prefix(prec, method)}{side}_over_full", (batch, prec, method, compiled),
                   (batch, prec, "full", compiled), batch, f"{prec} {side}: {method} / full tokens/s")
        if batch != 32 and not compiled:
            ratios(f"{prefix(prec, method)}eager_over_batch_32", (batch, prec, method, False), (32, prec, method, False),
                   batch, f"{prec} {method} eager per token vs batch 32")
    wanted = ["batch_32.eager_bf16_over_fp32", "batch_32.compiled_over_eager", "batch_32.eager_tokens_per_s",
              "batch_32.eager_mfu"]
    headline = [k for k in wanted if k in figures] or [k for k in figures if k.endswith(("_over_fp32", "_over_full"))][:3] \
        or list(figures)[2:3]
    write_result("train_step", figures, headline=headline, config={
        "model": a.model, "batch_sizes": a.batch_sizes, "steps": a.steps, "warmup": a.warmup, "repeats": a.repeats,
        "compile": not a.no_compile, "precisions": [p if p == "fp32" else "bf16 autocast" for p in precisions],
        "methods": methods, "auto_verdict": "bf16" if verdict else "fp32", "threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()})


if __name__ == "__main__":
    main()
