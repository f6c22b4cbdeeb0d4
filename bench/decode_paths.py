"""What a lone request's decode loop could save on this CPU: a static KV cache with a compiled
decode step, and an LM head trimmed to the tokens the task's answers use, against the
generator's greedy loop (DynamicCache, eager, full 49,152-row head).

    .venv/bin/python bench/decode_paths.py                         # data/models/smiles2iupac
    .venv/bin/python bench/decode_paths.py --model data/models/smiles2iupac --requests 16 --threads 2

Every path decodes greedily, one request at a time (batch 1, as the service answers a lone
request), in the precision `serve.precision: auto` picks here (bf16 weights where bf16 is
native). Paths:
- eager: `Generator._greedy` with the full head;
- static+compile: prefill eager into a `StaticCache` of fixed length, then every decode step
  through one `torch.compile`d forward (fixed shapes: compiled once per cache length);
- trimmed-head: the decoder body, then logits only for the model's answer vocabulary (its
  seqtune.json, or the tokens of `--train`'s completions + EOS; the generator's `AnswerHead`
  does this by default): the head is
  ~21% of SmolLM2-135M's bytes read per token, and a trained specialist's greedy token almost
  never lies outside that set (counted: "same outputs");
- static+compile+trimmed: both.
Prints p50/p90 seconds per request, ms per generated token, and how many outputs equal the
eager path's (a path that changes answers is not free). Every path is warmed (and compiled)
first, then the paths answer all requests in `--repeats` alternating rounds, so a burst of
other work slows a round of each rather than one path: p50 is each round's median request,
printed and written as the median and min-max over rounds, with each path's speed-up over
eager round by round, to reports/bench/decode_paths.json (`common.write_result`). Prints the
load averages before/after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, answer_token_ids, model_label, molecules, spread, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))


class Decoder:
    """Greedy decoding of one prompt with the chosen cache / head; returns generated ids."""

    def __init__(self, model, eos: int, max_new_tokens: int, *, static: bool, head_ids: list[int] | None,
                 cache_len: int = 128):
        import torch

        self.model, self.eos, self.max_new = model, eos, max_new_tokens
        self.static, self.cache_len = static, cache_len
        self.body = model.get_decoder()
        if head_ids is None:
            self.head_ids, self.head_w = None, None
        else:
            self.head_ids = torch.tensor(head_ids)
            self.head_w = model.get_output_embeddings().weight[self.head_ids].contiguous()
        self.step = torch.compile(self._forward, dynamic=False) if static else self._forward
        self.cache = None

    def _forward(self, ids, position_ids, cache_position, cache):
        import torch

        h = self.body(input_ids=ids, position_ids=position_ids, cache_position=cache_position,
                      past_key_values=cache, use_cache=True).last_hidden_state[:, -1]
        if self.head_w is None:
            return self.model.get_output_embeddings()(h).argmax(-1)
        return self.head_ids[torch.nn.functional.linear(h, self.head_w).argmax(-1)]

    def __call__(self, input_ids) -> list[int]:
        import torch
        from transformers import DynamicCache, StaticCache

        n = input_ids.shape[1]
        if self.static:
            if self.cache is None:
                self.cache = StaticCache(config=self.model.config, max_cache_len=self.cache_len)
            self.cache.reset()
            cache = self.cache
        else:
            cache = DynamicCache(config=self.model.config)
        pos = torch.arange(n)
        nxt = self._forward(input_ids, pos[None], pos, cache)  # prefill: eager (prompt lengths vary)
        out: list[int] = []
        for s in range(self.max_new):
            tok = int(nxt)
            if tok == self.eos:
                break
            out.append(tok)
            if s == self.max_new - 1:
                break
            p = torch.tensor([n + s])
            nxt = self.step(nxt.view(1, 1), p[None], p, cache)
        return out


def main() -> None:
    import torch

    from seqtune.inference.loader import load_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "data" / "models" / "smiles2iupac")
    ap.add_argument("--train", type=Path, help="the task's train split (default data/datasets/<task>/train.parquet)")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of the paths")
    a = ap.parse_args()
    if not (a.model / "seqtune.json").exists():
        sys.exit(f"{a.model} is not a seqtune model folder: train one (make run) or pass --model")
    torch.set_num_threads(a.threads)
    # The full head: the reference every other path is compared with.
    gen = load_generator(a.model, device="cpu", max_new_tokens=a.max_new_tokens, batch_size=1, precision="auto",
                         answer_vocab=False)
    head_ids, source = answer_token_ids(a.model, gen.tokenizer,
                                        a.train or REPO / "data" / "datasets" / gen.task.name / "train.parquet")
    vocab = gen.model.get_output_embeddings().weight.shape[0]
    eos = gen.tokenizer.eos_token_id
    sources = molecules(a.requests + 2, seed=1)
    warm, sources = sources[:2], sources[2:]
    prompts = [gen.tokenizer(gen.prompts([s]), return_tensors="pt")["input_ids"] for s in sources]
    load = os.getloadavg()
    print(f"{a.model} ({gen.task.name}), {gen.precision} weights, {a.threads} threads, {len(sources)} single requests; "
          f"head trimmed to {len(head_ids)} of {vocab} tokens ({source})")
    paths = {
        "eager": lambda ids: gen._greedy(ids, torch.ones_like(ids))[0],
        "trimmed-head": Decoder(gen.model, eos, a.max_new_tokens, static=False, head_ids=head_ids),
        "static+compile": Decoder(gen.model, eos, a.max_new_tokens, static=True, head_ids=None),
        "static+compile+trimmed": Decoder(gen.model, eos, a.max_new_tokens, static=True, head_ids=head_ids),
    }
    print(f"{'path':>22} {'first s':>8} {'p50 s':>7} {'p90 s':>7} {'ms/token':>8} {'same outputs':>12}")
    figures: dict = {}
    with torch.inference_mode():
        first: dict[str, float] = {}
        for name, decode in paths.items():
            t = time.perf_counter()
            for s in warm:  # the first call compiles
                decode(gen.tokenizer(gen.prompts([s]), return_tensors="pt")["input_ids"])
            first[name] = time.perf_counter() - t
        times: dict[str, list[list[float]]] = {name: [] for name in paths}
        outs: dict[str, list] = {}
        for _ in range(a.repeats):
            for name, decode in paths.items():
                round_times, round_outs = [], []
                for ids in prompts:
                    t = time.perf_counter()
                    round_outs.append(decode(ids))
                    round_times.append(time.perf_counter() - t)
                times[name].append(round_times)
                outs[name] = round_outs
    reference = outs["eager"]
    for name in paths:
        tokens = sum(len(o) + 1 for o in outs[name])
        p50s = [statistics.median(ts) for ts in times[name]]
        q = statistics.quantiles([t for ts in times[name] for t in ts], n=10)
        ms_token = [1000 * sum(ts) / tokens for ts in times[name]]
        same = sum(x == y for x, y in zip(outs[name], reference))
        print(f"{name:>22} {first[name]:>8.1f} {statistics.median(p50s):>7.3f} {q[-1]:>7.3f} "
              f"{statistics.median(ms_token):>8.1f} {same:>6}/{len(outs[name])}   "
              f"(p50 over {a.repeats} rounds {min(p50s):.3f}-{max(p50s):.3f})")
        figures[f"{name}.p50_s"] = spread(p50s)
        figures[f"{name}.p90_s"] = round(q[-1], 4)
        figures[f"{name}.ms_per_token"] = spread(ms_token)
        figures[f"{name}.first_calls_s"] = round(first[name], 2)
        figures[f"{name}.same_outputs_as_eager"] = same
        if name != "eager":
            figures[f"{name}.speedup_over_eager"] = spread([statistics.median(e) / statistics.median(x)
                                                            for e, x in zip(times["eager"], times[name])])
    print(f"load 1/5/15 min before {'/'.join(f'{x:.2f}' for x in load)}, after "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures["requests"] = len(prompts)
    write_result("decode_paths", figures, headline=["trimmed-head.speedup_over_eager", "trimmed-head.same_outputs_as_eager",
                                                    "static+compile.speedup_over_eager"], config={
        "model": model_label(a.model), "task": gen.task.name, "precision": gen.precision, "threads": a.threads,
        "requests": len(prompts), "max_new_tokens": a.max_new_tokens, "head_tokens": len(head_ids), "vocab": vocab,
        "head_source": source, "repeats": a.repeats})


if __name__ == "__main__":
    main()
