"""Does bf16 pay on this CPU? fp32 vs bf16 matmul and generation, side by side in one run.

    .venv/bin/python bench/cpu_bf16.py                 # SmolLM2-135M from data/base_model (dvc repro base_model)
    .venv/bin/python bench/cpu_bf16.py --model tiny    # the mechanics only

Prints the CPU's capability (what torch dispatches to: AVX2, AVX512, ...), whether oneDNN
reports native bf16 (AVX512-BF16 / AMX), the time of one SmolLM2-shaped matmul
(1024x576 @ 576x1536, a batch of 32 x 32 tokens through the MLP's up-projection) in fp32 and in bf16,
and greedy generation of the same prompts with and without bf16 autocast (items/s; the
outputs are compared). `seqtune.pipeline.generation.native_bf16` is what training and the
generator use to choose: bf16 only where it is native. Prints the load average: other work
on the cores skews the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

PROMPTS = ["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CCn1ccnc1", "CC(C)Cc1ccc(C)cc1", "OC(=O)CCl",
           "CN1CCC(CC1)O", "Brc1ccsc1"]


def matmul_ms(dtype: torch.dtype, reps: int) -> float:
    a, b = torch.randn(1024, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    a @ b  # oneDNN builds its kernel on the first call
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return (time.perf_counter() - t) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base", help="base (data/base_model) or tiny")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.pipeline.generation import Generator, native_bf16
    from seqtune.pipeline.models import build_tiny

    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16(cpu)}")
    fp32 = matmul_ms(torch.float32, 5)
    bf16 = matmul_ms(torch.bfloat16, 2)
    flop = 2 * 1024 * 576 * 1536
    print(f"matmul 1024x576@576x1536: fp32 {fp32:.1f} ms ({flop / fp32 / 1e6:.0f} GFLOP/s), "
          f"bf16 {bf16:.1f} ms ({flop / bf16 / 1e6:.0f} GFLOP/s): bf16/fp32 time {bf16 / fp32:.2f}x")

    folder = REPO / "data" / "base_model" if a.model == "base" else build_tiny(Path(tempfile.mkdtemp()) / "tiny")
    if not (Path(folder) / "config.json").exists():
        sys.exit(f"{folder} has no model: run `dvc repro base_model` or pass --model tiny")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    gen = Generator(model, AutoTokenizer.from_pretrained(folder), task="smiles2iupac", fmt="plain",
                    max_new_tokens=a.max_new_tokens, batch_size=len(PROMPTS), precision="fp32")
    results = {}
    for name, ctx in (("fp32", nullcontext()), ("bf16 autocast", torch.autocast("cpu", dtype=torch.bfloat16))):
        with ctx:
            gen.generate(PROMPTS[:1])
            t = time.perf_counter()
            outs = gen.generate(PROMPTS)
            results[name] = (time.perf_counter() - t, outs)
        print(f"generate {len(PROMPTS)} items x <= {a.max_new_tokens} tokens, {name}: "
              f"{results[name][0]:.2f} s ({len(PROMPTS) / results[name][0]:.2f} items/s)")
    (t32, o32), (t16, o16) = results["fp32"], results["bf16 autocast"]
    same = sum(x == y for x, y in zip(o32, o16))
    print(f"bf16/fp32 generation time {t16 / t32:.2f}x; identical outputs {same}/{len(PROMPTS)}")
    print("load average (1/5/15 min): %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
