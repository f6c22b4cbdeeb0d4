"""Single-request latency of the generator, by weight precision, LM head and torch threads: what
one small-molecule request costs the service before HTTP and batching.

    .venv/bin/python bench/request_latency.py                                # data/models/smiles2iupac
    .venv/bin/python bench/request_latency.py --model data/models/smiles2iupac --threads 1,2 --requests 16
    .venv/bin/python bench/request_latency.py --test data/datasets/smiles2iupac/test.parquet --n-test 200
    .venv/bin/python bench/request_latency.py --molecules known --precisions bf16 --heads full,answer --threads 2

For each thread count, precision and head, `--requests` molecules are answered one at a time
with `Generator.predict([smiles])` (greedy, as the service decodes a lone request), after two
warm-up requests. `--molecules random`: random fragment molecules of 2-10 fragments (drug
size, ~22 answer tokens); `known`: the 20 well-known small molecules of `known_molecules.py`
(ethanol ... ibuprofen). Heads: `full` (all 49,152 tokens) and `answer` (the model's answer
vocabulary, `inference.heads.AnswerHead`: from its seqtune.json, or computed from `--train` for a
model trained before cards recorded it). Precisions:
- fp32: fp32 weights, no autocast (what an AVX2-only CPU runs);
- autocast: fp32 weights under bf16 autocast (the generator's default where the CPU has
  native bf16: AVX512-BF16/AMX);
- bf16: the weights themselves cast to bf16 (no fp32 master copy: half the bytes per token;
  `precision: auto` where the CPU has native bf16).
Prints p50/p90 seconds per request, ms per generated token (EOS counted), and how many
outputs equal the first precision and head's (a lever that changes answers is not free).
A model that never emits EOS runs to `--max-new-tokens` every time. With `--test` (the model's
own test split, as the data stage wrote it) it also decodes the first `--n-test` items in
batches of 32 per precision and head: items/s and the task's primary metric, so a faster precision
shows what it costs in quality on the same items; `--issue-baseline` adds there the generator
as it was when the speed issue was filed (bf16 autocast over fp32 weights, every batch through
`model.generate`, full head), so the ratio to today's defaults is measured side by side.
Every comparison runs `--repeats` alternating rounds (each precision and head answers all the
requests, then the next, and round after round), so a burst of other work slows a round of
each rather than one side: p50 is each round's median request, printed and written as the
median and min-max over rounds (p90 and ms/token over all rounds' requests), items/s and the
ratios to the issue baseline round by round, to reports/bench/request_latency.json
(`common.write_result`). Prints the load averages: other work on the cores skews the figures.
"""

from __future__ import annotations

import argparse
import copy
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


def main() -> None:
    import torch

    from known_molecules import KNOWN
    from seqtune.inference.devices import native_bf16
    from seqtune.inference.generator import Generator
    from seqtune.inference.loader import load_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "data" / "models" / "smiles2iupac",
                    help="a fine-tuned model folder (with seqtune.json)")
    ap.add_argument("--requests", type=int, default=12, help="with --molecules random")
    ap.add_argument("--molecules", choices=["random", "known"], default="random")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--precisions", default="fp32,autocast,bf16")
    ap.add_argument("--heads", default="full", help="comma-separated: full, answer")
    ap.add_argument("--train", type=Path, help="train split for a model whose seqtune.json has no answer vocabulary")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--test", type=Path, help="the model's test split (.parquet) for the batched quality check")
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--issue-baseline", action="store_true",
                    help="with --test: also the generator as the speed issue found it (autocast, model.generate)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds per comparison")
    a = ap.parse_args()
    if not (a.model / "seqtune.json").exists():
        sys.exit(f"{a.model} is not a seqtune model folder: train one (make run) or pass --model")

    # fp32, full head: every other generator works on its own copy (a Generator casts its
    # model in place and installs its head in it).
    base = load_generator(a.model, device="cpu", max_new_tokens=a.max_new_tokens, batch_size=1, precision="fp32",
                          answer_vocab=False)
    precisions = a.precisions.split(",")
    if not native_bf16(torch.device("cpu")):
        from seqtune.inference.precision import bf16_verdict

        print(f"this CPU has no native bf16 ({bf16_verdict('cpu').reason}; bench/cpu_bf16.py): fp32 only")
        precisions = ["fp32"]
    heads = a.heads.split(",")
    ids = None
    if "answer" in heads:
        train = a.train or REPO / "data" / "datasets" / base.task.name / "train.parquet"
        ids, source = answer_token_ids(a.model, base.tokenizer, train)
        print(f"answer head: {len(ids)} of {base.model.config.vocab_size} tokens ({source})")
    gens = {}
    for p in precisions:
        for h in heads:
            gens[f"{p}/{h}"] = Generator(copy.deepcopy(base.model), base.tokenizer, task=base.task.name, fmt=base.format,
                                         max_new_tokens=a.max_new_tokens, batch_size=1, precision=p,
                                         answer_ids=ids if h == "answer" else None)
    if a.molecules == "known":
        sources = [smi for _, smi in KNOWN]
        warm = molecules(2, seed=1)
    else:
        sources = molecules(a.requests + 2, seed=1)
        warm, sources = sources[:2], sources[2:]
    load = os.getloadavg()
    print(f"{a.model} ({base.task.name}, {base.format} format), {len(sources)} single requests ({a.molecules} molecules), "
          f"max_new_tokens {a.max_new_tokens}")
    print(f"{'threads':>7} {'precision/head':>14} {'p50 s':>7} {'p90 s':>7} {'ms/token':>8} {'tokens/req':>10} "
          f"{'same outputs':>12}")
    reference: list[str] | None = None
    figures: dict = {}
    for threads in (int(t) for t in a.threads.split(",")):
        torch.set_num_threads(threads)
        for gen in gens.values():
            for s in warm:
                gen.predict([s])
        times: dict[str, list[list[float]]] = {name: [] for name in gens}
        outs: dict[str, list[str]] = {}
        tokens: dict[str, int] = {}
        for _ in range(a.repeats):
            for name, gen in gens.items():
                round_times, round_outs, round_tokens = [], [], 0
                for s in sources:
                    t = time.perf_counter()
                    (pred,) = gen.predict([s])
                    round_times.append(time.perf_counter() - t)
                    round_outs.append(pred.output)
                    round_tokens += len(gen.tokenizer(pred.output, add_special_tokens=False)["input_ids"]) + 1
                times[name].append(round_times)
                outs[name], tokens[name] = round_outs, round_tokens
        for name in gens:
            if reference is None:
                reference = outs[name]
            same = sum(x == y for x, y in zip(outs[name], reference))
            p50s = [statistics.median(ts) for ts in times[name]]
            pooled = [t for ts in times[name] for t in ts]
            q = statistics.quantiles(pooled, n=10)
            ms_token = [1000 * sum(ts) / tokens[name] for ts in times[name]]
            print(f"{threads:>7} {name:>14} {statistics.median(p50s):>7.3f} {q[-1]:>7.3f} "
                  f"{statistics.median(ms_token):>8.1f} {tokens[name] / len(sources):>10.1f} {same:>6}/{len(sources)}"
                  f"   (p50 over {a.repeats} rounds {min(p50s):.3f}-{max(p50s):.3f})")
            key = f"threads_{threads}.{name}"
            figures[f"{key}.p50_s"] = spread(p50s)
            figures[f"{key}.p90_s"] = round(q[-1], 4)
            figures[f"{key}.ms_per_token"] = spread(ms_token)
            figures[f"{key}.tokens_per_request"] = round(tokens[name] / len(sources), 1)
            figures[f"{key}.same_outputs"] = same
    headline = [f"threads_{max(int(t) for t in a.threads.split(','))}.{name}.p50_s" for name in gens][:3]
    if a.test:
        import pandas as pd

        torch.set_num_threads(max(int(t) for t in a.threads.split(",")))
        rows = pd.read_parquet(a.test).head(a.n_test).to_dict("records")
        primary = base.task.primary_metric
        print(f"batched greedy, batch 32, first {len(rows)} items of {a.test}, {torch.get_num_threads()} threads, "
              f"{a.repeats} alternating rounds:")
        batched = dict(gens)
        if a.issue_baseline and native_bf16(torch.device("cpu")):
            batched["issue baseline"] = Generator(copy.deepcopy(base.model), base.tokenizer, task=base.task.name,
                                                  fmt=base.format, max_new_tokens=a.max_new_tokens, batch_size=32,
                                                  precision="autocast", drop_finished=False)
        secs: dict[str, list[float]] = {name: [] for name in batched}
        outs_b: dict[str, list[str]] = {}
        for _ in range(a.repeats):
            for name, gen in batched.items():
                gen.batch_size = 32
                t = time.perf_counter()
                outs_b[name] = [pr.output for pr in gen.predict([r["source"] for r in rows])]
                secs[name].append(time.perf_counter() - t)
        first_name = next(iter(batched))
        for name in batched:
            score = statistics.mean(x[primary] for x in base.task.score_batch(outs_b[name], rows))
            rate = [len(rows) / t for t in secs[name]]
            same = sum(x == y for x, y in zip(outs_b[name], outs_b[first_name]))
            print(f"{name:>14}: {statistics.median(rate):6.2f} items/s ({min(rate):.2f}-{max(rate):.2f}), {primary} {score:.3f}, "
                  f"same outputs as {first_name} {same}/{len(rows)}")
            figures[f"batched.{name}.items_per_s"] = spread(rate)
            figures[f"batched.{name}.{primary}"] = round(score, 4)
            figures[f"batched.{name}.same_outputs_as_{first_name}"] = same
            if "issue baseline" in batched and name != "issue baseline":
                ratios = [b / t for t, b in zip(secs[name], secs["issue baseline"])]
                figures[f"batched.{name}.over_issue_baseline"] = spread(ratios)
                print(f"{'':>14}  {statistics.median(ratios):.2f}x the issue baseline ({min(ratios):.2f}-{max(ratios):.2f})")
        headline.append(f"batched.{first_name}.items_per_s")
        if f"batched.{first_name}.over_issue_baseline" in figures:
            headline.append(f"batched.{first_name}.over_issue_baseline")
    print(f"load 1/5/15 min before {'/'.join(f'{x:.2f}' for x in load)}, after "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    write_result("request_latency", figures, headline=headline, config={
        "model": model_label(a.model), "task": base.task.name, "format": base.format, "molecules": a.molecules,
        "requests": len(sources), "threads": a.threads, "precisions": ",".join(precisions), "heads": a.heads,
        "answer_vocab": len(ids) if ids is not None else None, "max_new_tokens": a.max_new_tokens,
        "test": str(a.test) if a.test else None, "n_test": a.n_test if a.test else None,
        "issue_baseline": a.issue_baseline, "repeats": a.repeats})


if __name__ == "__main__":
    main()
