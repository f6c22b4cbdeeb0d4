"""Generation speed: the generator's greedy decoder vs `model.generate`, same prompts and outputs.

    .venv/bin/python bench/generation_speed.py                  # real SmolLM2-135M, chat format
    .venv/bin/python bench/generation_speed.py --items 32 --batch-size 16

Three ways to answer the same `--items` smiles2iupac prompts greedily with SmolLM2-135M in the
chat format (its answers end at <|im_end|> after varied lengths, like a fine-tuned champion's):
1. `Generator` as eval and the service run it: length-sorted batches of `--batch-size`, rows
   leaving the batch at EOS (`drop_finished=True`, the default);
2. the same batches through transformers' `model.generate` (`drop_finished=False`);
3. plain `model.generate`, one request at a time (what a naive server does).
Prints items/s, ms per generated token, the ratio of 1 over 2 and 3, and whether the outputs
are identical (they must be). Prints the load averages: other work on the cores skews figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.pipeline.generation import Generator
    from train_throughput import base_model, molecules  # the same model resolution and molecules

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--single", type=int, default=8, help="requests answered one at a time (way 3)")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = base_model("smollm2-135m", Path(tmp))
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        tok = AutoTokenizer.from_pretrained(folder)
    sources = molecules(a.items, seed=0)
    kw = dict(task="smiles2iupac", fmt="chat", max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
    fast, ref = Generator(model, tok, drop_finished=True, **kw), Generator(model, tok, drop_finished=False, **kw)
    fast.generate(sources[:2])  # warm-up
    load = os.getloadavg()

    def timed(gen: Generator, srcs):
        t = time.perf_counter()
        outs = gen.generate(srcs)
        return outs, time.perf_counter() - t

    out_fast, t_fast = timed(fast, sources)
    out_ref, t_ref = timed(ref, sources)
    n_tokens = sum(len(tok(o[0], add_special_tokens=False)["input_ids"]) + 1 for o in out_ref)  # + EOS
    single = sources[: a.single]
    t = time.perf_counter()
    out_single = []
    with torch.inference_mode():
        for s in single:
            enc = tok(ref.prompts([s]), return_tensors="pt")
            g = model.generate(**enc, max_new_tokens=a.max_new_tokens, do_sample=False,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            out_single.append(tok.decode(g[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    t_single = time.perf_counter() - t
    per_item_single = t_single / len(single)

    print(f"{a.items} items, batch {a.batch_size}, max_new_tokens {a.max_new_tokens}, {n_tokens} tokens generated "
          f"(mean {n_tokens / a.items:.1f}/item); torch threads {torch.get_num_threads()}")
    print(f"1. Generator, rows drop at EOS: {a.items / t_fast:6.2f} items/s, {1000 * t_fast / n_tokens:6.1f} ms/token")
    print(f"2. Generator, model.generate:   {a.items / t_ref:6.2f} items/s, {1000 * t_ref / n_tokens:6.1f} ms/token")
    print(f"3. model.generate per request:  {1 / per_item_single:6.2f} items/s ({len(single)} requests, "
          f"{per_item_single:.2f} s each)")
    print(f"ratio 1/2: {t_ref / t_fast:.2f}x; 1/3: {per_item_single * a.items / t_fast:.2f}x; "
          f"outputs 1 == 2: {out_fast == out_ref}")
    print(f"load 1/5/15 min before {'/'.join(f'{x:.2f}' for x in load)}, after "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
