"""Does bf16 pay on this CPU? The pipeline's verdict beside measured fp32 vs bf16 matmul and generation.

    .venv/bin/python bench/cpu_bf16.py                 # SmolLM2-135M from data/base_model (dvc repro base_model)
    .venv/bin/python bench/cpu_bf16.py --model tiny    # the mechanics only
    .venv/bin/python bench/cpu_bf16.py --remeasure     # the verdict measured again, not read from its cache
    .venv/bin/python bench/cpu_bf16.py --threads 1     # one thread (others' work on a core stalls two)

Prints the CPU (model name, what torch dispatches to: AVX2, AVX512, ...), oneDNN's own answer
(`_is_mkldnn_bf16_supported`: True on any AVX512 core, emulated or not), and the verdict
`precision: auto` acts on (`seqtune.inference.precision`: CPU flags avx512_bf16/amx_bf16, then
a measured matmul, cached per machine) with its reason. Then, measured here and now:

- one matmul at each shape the verdict measures (1024x576 @ 576x1536: a training batch of
  32 x 32 tokens through SmolLM2's MLP up-projection; 32x576 @ 576x1536: one decode step of a
  batch of 32), fp32 vs bf16;
- greedy generation of the same prompts in fp32, under bf16 autocast (fp32 weights: how
  training computes) and with bf16 weights (what evaluate/serve `auto` loads where bf16 is
  native), items/s and outputs the same as fp32's.

Each comparison runs `--repeats` alternating rounds (fp32, bf16, fp32, bf16, ...), so a burst
of other work slows a round of each rather than one side; the median and the min-max spread
are printed. So is the load average: other work on the cores skews the figures. Writes the
figures to reports/bench/cpu_bf16.json (`common.write_result`; the verdict in its config).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, alternate, model_label, spread, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

PROMPTS = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CCn1ccnc1", "CC(C)Cc1ccc(C)cc1", "OC(=O)CCl",
           "CN1CCC(CC1)O", "Brc1ccsc1"]


def text(xs: list[float], fmt: str = "{:.2f}") -> str:
    """'median (min-max)' of one side's rounds."""
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def matmuls(m: int, k: int, n: int, repeats: int) -> dict:
    """fp32 vs bf16 at one shape: ms per matmul and GFLOP/s, median and spread of the rounds."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    pairs = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    for x, y in pairs.values():
        x @ y  # oneDNN picks and builds its kernel on the first call
    # Enough calls per round for ~50 ms of fp32 work (bf16 gets as many: emulated it takes longer).
    t = time.perf_counter()
    a @ b
    reps = max(1, round(0.05 / max(time.perf_counter() - t, 1e-6)))

    def unit(x, y):
        def work():
            for _ in range(reps):
                x @ y
        return work

    times = alternate({name: unit(*xy) for name, xy in pairs.items()}, repeats)
    ms = {name: [s / reps * 1000 for s in ts] for name, ts in times.items()}
    flop = 2 * m * k * n
    line = ", ".join(f"{name} {text(v)} ms ({flop / statistics.median(v) / 1e6:.0f} GFLOP/s)" for name, v in ms.items())
    ratios = [b16 / f32 for f32, b16 in zip(ms["fp32"], ms["bf16"])]
    print(f"matmul {m}x{k}@{k}x{n}, {reps} per round: {line}; bf16/fp32 time {text(ratios)}x")
    shape = f"matmul_{m}x{k}@{k}x{n}"
    return {**{f"{shape}.{name}_ms": spread(v) for name, v in ms.items()},
            **{f"{shape}.{name}_gflop_per_s": round(flop / statistics.median(v) / 1e6, 1) for name, v in ms.items()},
            f"{shape}.bf16_over_fp32_time": spread(ratios)}


def generation(folder: Path, max_new_tokens: int, repeats: int) -> dict:
    """Greedy items/s in fp32, bf16 autocast and bf16 weights, and outputs equal to fp32's."""
    from seqtune.inference.loader import load_generator

    def generator(dtype: torch.dtype, autocast: bool):
        # The folder has no seqtune.json: taken for a smiles2iupac model in the plain format.
        gen = load_generator(folder, card={"task": "smiles2iupac", "format": "plain"}, device="cpu", precision="fp32",
                             max_new_tokens=max_new_tokens, batch_size=len(PROMPTS))
        # Built as fp32 (resolve_precision refuses bf16 where it is not native: here it is
        # measured anyway), then given the weights and autocast this side measures.
        gen.model.to(dtype)
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else nullcontext
        return gen, ctx

    sides = {"fp32": generator(torch.float32, False), "bf16 autocast": generator(torch.float32, True),
             "bf16 weights": generator(torch.bfloat16, False)}
    outs: dict[str, list[str]] = {}

    def unit(name, gen, ctx):
        def work():
            with ctx():
                outs[name] = gen.generate(PROMPTS)
        return work

    for gen, ctx in sides.values():  # warm-up: kernels, caches
        with ctx():
            gen.generate(PROMPTS[:1])
    times = alternate({name: unit(name, *side) for name, side in sides.items()}, repeats)
    figures = {}
    for name, ts in times.items():
        same = sum(x == y for x, y in zip(outs[name], outs["fp32"]))
        rel = [t / t32 for t, t32 in zip(ts, times["fp32"])]
        print(f"generate {len(PROMPTS)} items x <= {max_new_tokens} tokens, {name}: "
              f"{text([len(PROMPTS) / t for t in ts])} items/s, time vs fp32 {text(rel)}x, "
              f"outputs as fp32's {same}/{len(PROMPTS)}")
        key = "generate." + name.replace(" ", "_")
        figures[f"{key}.items_per_s"] = spread([len(PROMPTS) / t for t in ts])
        if name != "fp32":
            figures[f"{key}.time_over_fp32"] = spread(rel)
            figures[f"{key}.outputs_as_fp32"] = same
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base", help="base (data/base_model) or tiny")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds per comparison")
    ap.add_argument("--remeasure", action="store_true", help="measure the verdict again (and recache it)")
    ap.add_argument("--threads", type=int, help="torch threads for the timings (default: torch's); the "
                    "verdict measures on one, as a busy core stalls a multi-thread small matmul")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from seqtune.inference import precision
    from seqtune.pipeline.tiny_model import build_tiny

    cpu = precision.cpu_info()
    verdict = precision.cpu_verdict(cpu, remeasure=a.remeasure)
    onednn = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    present = [f for f in precision.BF16_FLAGS if cpu.flags and f in cpu.flags]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu.model}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bf16 flags: "
          f"{'unreadable' if cpu.flags is None else ', '.join(present) or 'none'}")
    print(f"oneDNN says bf16 supported: {onednn}")
    print(f"verdict (precision: auto): native bf16 {verdict.native}: {verdict.reason} "
          f"[cache {precision.cache_dir() / precision.CACHE_FILE}]")
    figures = {}
    for m, k, n in precision.SHAPES:
        figures.update(matmuls(m, k, n, a.repeats))

    folder = REPO / "data" / "base_model" if a.model == "base" else build_tiny(Path(tempfile.mkdtemp()) / "tiny")
    if not (Path(folder) / "config.json").exists():
        sys.exit(f"{folder} has no model: run `dvc repro base_model` or pass --model tiny")
    figures.update(generation(Path(folder), a.max_new_tokens, a.repeats))
    print("load average (1/5/15 min): %.2f %.2f %.2f" % os.getloadavg())
    m, k, n = precision.SHAPES[0]
    write_result("cpu_bf16", figures, headline=[f"matmul_{m}x{k}@{k}x{n}.bf16_over_fp32_time",
                                               "generate.bf16_weights.time_over_fp32"], config={
        "verdict_native_bf16": verdict.native, "verdict_reason": verdict.reason, "verdict_speedup": verdict.speedup,
        "onednn_says_bf16": onednn, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "model": "tiny (random)" if a.model == "tiny" else model_label(folder), "prompts": len(PROMPTS),
        "max_new_tokens": a.max_new_tokens, "repeats": a.repeats, "threads": torch.get_num_threads(),
        "remeasured": a.remeasure})


if __name__ == "__main__":
    main()
