"""Generation speed: the generator's greedy decoder vs `model.generate` and a transformers
`pipeline`, same prompts, same greedy outputs.

    .venv/bin/python bench/generation_speed.py                  # real SmolLM2-135M, chat format
    .venv/bin/python bench/generation_speed.py --items 32 --batch-size 16
    .venv/bin/python bench/generation_speed.py --model data/models/smiles2iupac --test data/datasets/smiles2iupac/test.parquet

Four ways to answer the same `--items` smiles2iupac prompts greedily:
1. `Generator` as eval and the service run it: length-sorted batches of `--batch-size`, rows
   leaving the batch at EOS (`drop_finished=True`, the default) and, for a fine-tuned model
   whose seqtune.json records its answer vocabulary, the LM head over those tokens only;
2. the same batches through transformers' `model.generate` (`drop_finished=False`, full head);
3. a transformers `pipeline("text-generation")` over the same prompt strings, `batch_size`
   `--batch-size` (left padding, greedy, `return_full_text=False`): what a user would write;
4. plain `model.generate`, one request at a time (what a naive server does).
Without `--model`: the base SmolLM2-135M in the chat format (answers of varied length ending
at <|im_end|>, like a fine-tuned champion's; random fragment molecules). With `--model`: that
fine-tuned folder, its format, and the sources of `--test` (its test split) when given.
Prints items/s, ms per generated token, the ratios of 1 to the others, and how many outputs
equal 1's (they must, except where the answer head changes one). The four ways run
`--repeats` alternating rounds (1, 2, 3, 4, 1, 2, ...), so a burst of other work slows a round
of each rather than one way; medians, min-max and the ratios round by round are printed and
written to reports/bench/generation_speed.json (`common.write_result`). Prints the load
averages: other work on the cores skews figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, alternate, base_model, model_label, molecules, spread, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    import torch
    from transformers import pipeline

    from seqtune.inference.formats import parse_completion
    from seqtune.inference.loader import load_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a fine-tuned model folder (default: the base SmolLM2-135M, chat format)")
    ap.add_argument("--test", type=Path, help="with --model: its test split, whose first --items sources are the prompts")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--single", type=int, default=8, help="requests answered one at a time (way 4)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of the four ways")
    a = ap.parse_args()

    kw = dict(max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        if a.model:
            fast = load_generator(a.model, device="cpu", **kw)  # as eval and the service load it
            ref = load_generator(a.model, device="cpu", drop_finished=False, answer_vocab=False, **kw)
        else:
            # The base model has no seqtune.json: taken for a smiles2iupac model in the chat format.
            folder = base_model("smollm2-135m", Path(tmp))
            card = {"task": "smiles2iupac", "format": "chat"}
            fast = load_generator(folder, card=card, device="cpu", **kw)
            ref = load_generator(folder, card=card, device="cpu", drop_finished=False, **kw)
        task, fmt = fast.task.name, fast.format
    model, tok = ref.model, ref.tokenizer  # full head: the reference for ways 2-4
    if a.test:
        import pandas as pd

        sources = pd.read_parquet(a.test, columns=["source"]).source.head(a.items).tolist()
    else:
        sources = molecules(a.items, seed=0)
    fast.generate(sources[:2])  # warm-up
    load = os.getloadavg()

    pipe = pipeline("text-generation", model=model, tokenizer=tok, device=model.device)
    prompts = ref.prompts(sources)
    gen_kw = dict(max_new_tokens=a.max_new_tokens, do_sample=False, return_full_text=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    single = sources[: a.single]
    outs: dict[str, list] = {}

    def way_fast():
        outs["fast"] = fast.generate(sources)

    def way_ref():
        outs["ref"] = ref.generate(sources)

    def way_pipe():
        with torch.inference_mode():
            outs["pipe"] = pipe(prompts, batch_size=a.batch_size, **gen_kw)

    def way_single():
        with torch.inference_mode():
            for s in single:
                enc = tok(ref.prompts([s]), return_tensors="pt")
                model.generate(**enc, max_new_tokens=a.max_new_tokens, do_sample=False,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)

    times = alternate({"fast": way_fast, "ref": way_ref, "pipe": way_pipe, "single": way_single}, a.repeats)
    out_fast, out_ref = outs["fast"], outs["ref"]
    out_pipe = [[parse_completion(fmt, ref.task, r[0]["generated_text"])] for r in outs["pipe"]]
    n_tokens = sum(len(tok(o[0], add_special_tokens=False)["input_ids"]) + 1 for o in out_ref)  # + EOS
    t_fast, t_ref, t_pipe = (statistics.median(times[k]) for k in ("fast", "ref", "pipe"))
    per_item_single = statistics.median(times["single"]) / len(single)

    def same(outs) -> str:
        return f"{sum(x == y for x, y in zip(outs, out_fast))}/{len(sources)}"

    head = f"answer head over {fast.answer_vocab} tokens" if fast.answer_vocab else "full head"
    print(f"{a.model or 'SmolLM2-135M (base)'} ({task}, {fmt} format, {fast.precision} weights); {a.items} items, "
          f"batch {a.batch_size}, max_new_tokens {a.max_new_tokens}, {n_tokens} tokens generated "
          f"(mean {n_tokens / a.items:.1f}/item); torch threads {torch.get_num_threads()}; "
          f"medians of {a.repeats} alternating rounds")
    print(f"1. Generator ({head}, rows drop at EOS): {a.items / t_fast:6.2f} items/s, {1000 * t_fast / n_tokens:6.1f} ms/token")
    print(f"2. Generator via model.generate (full head): {a.items / t_ref:6.2f} items/s, {1000 * t_ref / n_tokens:6.1f} ms/token, "
          f"same outputs as 1: {same(out_ref)}")
    print(f"3. transformers pipeline (full head):        {a.items / t_pipe:6.2f} items/s, {1000 * t_pipe / n_tokens:6.1f} ms/token, "
          f"same outputs as 1: {same(out_pipe)}")
    print(f"4. model.generate per request:               {1 / per_item_single:6.2f} items/s ({len(single)} requests, "
          f"{per_item_single:.2f} s each)")
    ratio = {"generator_over_model_generate": [r / f for f, r in zip(times["fast"], times["ref"])],
             "generator_over_pipeline": [p / f for f, p in zip(times["fast"], times["pipe"])],
             "generator_over_per_request": [s / len(single) * a.items / f for f, s in zip(times["fast"], times["single"])]}
    print("ratio 1/2: {}; 1/3: {}; 1/4: {} (median, min-max over rounds)".format(
        *(f"{statistics.median(v):.2f}x ({min(v):.2f}-{max(v):.2f})" for v in ratio.values())))
    figures = {
        "items_per_s.generator": spread([a.items / t for t in times["fast"]]),
        "items_per_s.model_generate": spread([a.items / t for t in times["ref"]]),
        "items_per_s.pipeline": spread([a.items / t for t in times["pipe"]]),
        "items_per_s.per_request": spread([len(single) / t for t in times["single"]]),
        "ms_per_token.generator": spread([1000 * t / n_tokens for t in times["fast"]]),
        "ms_per_token.model_generate": spread([1000 * t / n_tokens for t in times["ref"]]),
        "ms_per_token.pipeline": spread([1000 * t / n_tokens for t in times["pipe"]]),
        **{f"ratio.{k}": spread(v) for k, v in ratio.items()},
        "same_outputs.model_generate": sum(x == y for x, y in zip(out_ref, out_fast)),
        "same_outputs.pipeline": sum(x == y for x, y in zip(out_pipe, out_fast)),
        "items": a.items, "tokens_generated": n_tokens,
    }
    print(f"load 1/5/15 min before {'/'.join(f'{x:.2f}' for x in load)}, after "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    write_result("generation_speed", figures, headline=["items_per_s.generator", "ratio.generator_over_model_generate",
                                                        "ratio.generator_over_pipeline"], config={
        "model": model_label(a.model) if a.model else "smollm2-135m (base)", "task": task, "format": fmt,
        "precision": fast.precision, "head": head, "test": str(a.test) if a.test else None, "items": a.items,
        "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens, "single": len(single), "repeats": a.repeats,
        "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
