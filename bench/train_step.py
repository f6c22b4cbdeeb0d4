"""Training-step throughput by batch size, eager vs `torch.compile`: which knobs pay on this CPU.

    .venv/bin/python bench/train_step.py                          # SmolLM2-135M, batch 8/16/32/64, eager and compiled
    .venv/bin/python bench/train_step.py --batch-sizes 32 --no-compile

One step is what the train stage runs per batch: completion-only loss
(`seqtune.pipeline.completion_loss`), backward, fused AdamW (the Trainer's default optimizer),
in bf16 autocast where the CPU runs bf16 natively (else fp32). Batches are random token ids
with lengths drawn like the specialist data (14-44 tokens, the last 9 the completion), a new
length every step, so kernels see the variety of shapes length-grouped training gives them.
Tokens/s counts every position of a batch (no padding here). The first steps of each
configuration are warm-up (oneDNN kernel selection, compilation) and are timed apart.
Each batch size runs `--repeats` alternating rounds (eager, compiled, eager, compiled, ...: a
fresh model each run), so a burst of other work slows a round of each rather than one side;
the median and min-max of each are printed and written, with the compiled/eager ratio round
by round, to reports/bench/train_step.json (`common.write_result`). Prints the 1-minute load
average before and after each configuration: other work on the cores changes the figures 2-8x.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import base_model, spread, write_result  # noqa: E402


def run(base: Path, batch: int, compiled: bool, steps: int, warmup: int, bf16: bool) -> tuple[float, float]:
    """(warm-up seconds, tokens/s over the timed steps) for one configuration."""
    from transformers import AutoModelForCausalLM

    from seqtune.pipeline.completion_loss import completion_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    if compiled:
        # dynamic: the sequence length changes every batch; static shapes would recompile each time.
        model.model = torch.compile(model.model, dynamic=True)
    rng = random.Random(0)

    def step() -> int:
        length = rng.randint(14, 44)
        # ids within the vocabulary (all of SmolLM2's and Gemma's first 40,000; `tiny` has ~100 tokens)
        high = min(40_000, model.config.vocab_size)
        ids = torch.randint(min(100, high - 1), high, (batch, length))
        labels = ids.clone()
        labels[:, : length - 9] = -100
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = completion_loss(model, ids, torch.ones_like(ids), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return batch * length

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    warm = time.perf_counter() - t0
    t0, tokens = time.perf_counter(), 0
    for _ in range(steps):
        tokens += step()
    return warm, tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m | gemma3-270m | tiny | a local path")
    ap.add_argument("--batch-sizes", default="8,16,32,64")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds per batch size")
    a = ap.parse_args()

    import tempfile

    from seqtune.inference.devices import native_bf16, pick_device

    bf16 = native_bf16(pick_device())
    print(f"model {a.model}, {'bf16 autocast' if bf16 else 'fp32'}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = base_model(a.model, Path(tmp))
        rates: dict[tuple[int, bool], list[float]] = {}
        warms: dict[tuple[int, bool], list[float]] = {}
        for batch in (int(b) for b in a.batch_sizes.split(",")):
            for r in range(a.repeats):
                for compiled in (False,) if a.no_compile else (False, True):
                    before = os.getloadavg()[0]
                    warm, rate = run(base, batch, compiled, a.steps, a.warmup, bf16)
                    rates.setdefault((batch, compiled), []).append(rate)
                    warms.setdefault((batch, compiled), []).append(warm)
                    print(f"batch {batch:3d} {'compiled' if compiled else 'eager   '} round {r + 1}: {rate:7.1f} tokens/s "
                          f"(warm-up {a.warmup} steps {warm:5.1f} s); load {before:.2f} -> {os.getloadavg()[0]:.2f}",
                          flush=True)
    figures = {}
    for (batch, compiled), rs in rates.items():
        side = "compiled" if compiled else "eager"
        figures[f"batch_{batch}.{side}_tokens_per_s"] = spread(rs)
        figures[f"batch_{batch}.{side}_warmup_s"] = spread(warms[batch, compiled])
        print(f"batch {batch} {side}: {statistics.median(rs):.1f} tokens/s ({min(rs):.1f}-{max(rs):.1f}, {len(rs)} rounds)")
    for (batch, compiled), rs in rates.items():
        if compiled and (batch, False) in rates:
            ratios = [c / e for c, e in zip(rs, rates[batch, False])]
            figures[f"batch_{batch}.compiled_over_eager"] = spread(ratios)
            print(f"batch {batch}: torch.compile {statistics.median(ratios):.2f}x eager "
                  f"({min(ratios):.2f}-{max(ratios):.2f}, round by round)")
    if (32, False) in rates:
        for (batch, compiled), rs in rates.items():
            if not compiled and batch != 32:
                ratios = [x / y for x, y in zip(rs, rates[32, False])]
                figures[f"batch_{batch}.eager_over_batch_32_eager"] = spread(ratios)
                print(f"batch {batch} eager: {statistics.median(ratios):.2f}x batch 32 per token")
    headline = [k for k in ("batch_32.compiled_over_eager", "batch_32.eager_tokens_per_s") if k in figures] or list(figures)[:1]
    write_result("train_step", figures, headline=headline, config={
        "model": a.model, "batch_sizes": a.batch_sizes, "steps": a.steps, "warmup": a.warmup, "repeats": a.repeats,
        "compile": not a.no_compile, "precision": "bf16 autocast" if bf16 else "fp32", "threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()})

if __name__ == "__main__":
    main()
