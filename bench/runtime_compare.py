"""Serving runtimes side by side: PyTorch vs CTranslate2 (float32, int8_float32) on the same test items.

    .venv/bin/python bench/runtime_compare.py                          # data/models/smiles2iupac, its test split
    .venv/bin/python bench/runtime_compare.py --model data/models/smiles2iupac --n 100 --single 12 --repeats 3
    .venv/bin/python bench/runtime_compare.py --runtimes torch,ct2-int8_float32 --threads 2

What `serve.runtime` / `serve.ct2_compute_type` buy and cost. The model folder is converted
once per compute type (`seqtune.serving.ct2.convert`, as `seqtune bento import` does), then each
runtime gets the same settings as the service (params.yaml `serve`: max_new_tokens, num_beams,
answer_vocab, precision for torch; `--threads` for both, torch's default when not given):
- quality, on the first `--n` items of the test split: the task's primary metric (smiles2iupac:
  structure match) of greedy and of verified decoding, and the share of greedy outputs
  identical to the torch runtime's;
- batched greedy items/s over those `--n` items (batches of `--batch-size`);
- lone-request p50 seconds of `--single` test items answered one at a time, greedy and
  verified (OPSIN's check included, as the service pays it).
Timings run `--repeats` rounds; within a round the runtimes take turns (per batch pass, per
lone request), so other work on the cores slows each runtime alike; each timed figure is the
median with min-max over the rounds. Prints the CPU kind (avx512_bf16 / avx512f / avx2) and
load averages, and writes reports/bench/runtime_compare.json (`--out-dir` elsewhere).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, alternate, cpu, load_average, model_label, spread, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))


def _generators(a, serve, ct2_root: Path) -> dict:
    """runtime name -> generator, each answering with the service's settings."""
    from seqtune.inference.loader import load_generator
    from seqtune.serving.ct2 import COMPUTE_TYPES, CT2Generator, convert

    gens = {}
    for name in a.runtimes.split(","):
        kw = dict(max_new_tokens=serve.max_new_tokens, batch_size=a.batch_size, answer_vocab=serve.answer_vocab)
        if name == "torch":
            gens[name] = load_generator(a.model, device="cpu", precision=serve.precision, **kw)
            continue
        compute = name.removeprefix("ct2-")
        if not name.startswith("ct2-") or compute not in COMPUTE_TYPES:
            sys.exit(f"unknown runtime {name!r}: torch or ct2-<{'|'.join(COMPUTE_TYPES)}>")
        t = time.perf_counter()
        out = convert(a.model, ct2_root / compute, compute)
        size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
        print(f"{name}: converted in {time.perf_counter() - t:.1f}s, {size:.1f} MiB")
        gens[name] = CT2Generator.load(a.model, out, compute_type=compute, threads=a.threads, **kw)
    return gens


def _lone_p50(gens: dict, sources: list[str], repeats: int, **predict) -> dict[str, list[float]]:
    """Per runtime, the median seconds of a lone request in each round; within a round the
    runtimes take turns on every request."""
    rounds: dict[str, list[float]] = {n: [] for n in gens}
    for _ in range(repeats):
        times: dict[str, list[float]] = {n: [] for n in gens}
        for s in sources:
            for name, t in alternate({n: (lambda g=g, s=s: g.predict([s], **predict)) for n, g in gens.items()}, 1).items():
                times[name] += t
        for name, ts in times.items():
            rounds[name].append(statistics.median(ts))
    return rounds


def main() -> None:
    import pandas as pd
    import torch

    from seqtune.config import DEFAULT_PARAMS, load_params
    from seqtune.inference.cards import read_model_card
    from seqtune.serving.runtime import warm_opsin

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "data" / "models" / "smiles2iupac",
                    help="a fine-tuned model folder (with seqtune.json)")
    ap.add_argument("--test", type=Path, help="test split (.parquet); default data/datasets/<task>/test.parquet")
    ap.add_argument("--n", type=int, default=100, help="test items for quality and batched throughput")
    ap.add_argument("--single", type=int, default=12, help="lone requests per round (the first test items)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (>= 3 for a spread)")
    ap.add_argument("--runtimes", default="torch,ct2-float32,ct2-int8_float32")
    ap.add_argument("--threads", type=int, help="torch and ctranslate2 threads (default: torch's)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="whose serve section to answer with")
    ap.add_argument("--out-dir", type=Path, help="where runtime_compare.json goes (default reports/bench)")
    a = ap.parse_args()
    if not (a.model / "seqtune.json").exists():
        sys.exit(f"{a.model} is not a seqtune model folder: train one (make run) or pass --model")
    if a.repeats < 1 or a.n < 1 or a.single < 1:
        sys.exit("--repeats, --n and --single must be at least 1")
    if "torch" not in a.runtimes.split(","):
        sys.exit("--runtimes must include torch: the others are compared with it")
    if a.threads:
        torch.set_num_threads(a.threads)
    a.threads = torch.get_num_threads()
    serve = load_params(a.params).serve
    card = read_model_card(a.model)
    test = a.test or REPO / "data" / "datasets" / card["task"] / "test.parquet"
    rows = pd.read_parquet(test).head(a.n).to_dict("records")
    sources = [r["source"] for r in rows]
    single = sources[: a.single]

    info = cpu()
    print(f"CPU: {info['model']} ({info['kind']}; flags {info['flags']}), {a.threads} threads, {load_average()}")
    print(f"{model_label(a.model)}: {len(rows)} items of {test}, {len(single)} lone requests x {a.repeats} rounds, "
          f"max_new_tokens {serve.max_new_tokens}, {serve.num_beams} beams, answer_vocab {serve.answer_vocab}")
    with tempfile.TemporaryDirectory(prefix="runtime-compare-") as tmp:
        gens = _generators(a, serve, Path(tmp))
        task = next(iter(gens.values())).task
        if task.uses_opsin:
            warm_opsin()  # verified decoding and scoring: no JVM start inside a timed request
        for g in gens.values():
            g.predict(single[:2])  # warm-up: first-call allocations stay out of the timings

        primary = task.primary_metric
        figures: dict = {}
        greedy = {n: [p.output for p in g.predict(sources)] for n, g in gens.items()}
        reference = greedy["torch"]
        print(f"{'runtime':>18} {'precision':>13} {primary + ' greedy':>24} {'verified':>9} {'same as torch':>14}")
        for name, g in gens.items():
            verified = [p.output for p in g.predict(sources, decoding="verified", num_beams=serve.num_beams)]
            score = {d: statistics.mean(x[primary] for x in task.score_batch(outs, rows))
                     for d, outs in (("greedy", greedy[name]), ("verified", verified))}
            same = 100 * sum(x == y for x, y in zip(greedy[name], reference)) / len(rows)
            figures |= {f"{name} {primary} greedy": score["greedy"], f"{name} {primary} verified": score["verified"]}
            if name != "torch":
                figures[f"{name} greedy identical to torch %"] = same
            print(f"{name:>18} {g.precision:>13} {score['greedy']:>24.3f} {score['verified']:>9.3f} {same:>13.1f}%")

        batched = alternate({n: (lambda g=g: g.predict(sources)) for n, g in gens.items()}, a.repeats)
        lone_greedy = _lone_p50(gens, single, a.repeats)
        lone_verified = _lone_p50(gens, single, a.repeats, decoding="verified", num_beams=serve.num_beams)
    print(f"{'runtime':>18} {'batched items/s':>22} {'lone greedy p50 s':>24} {'lone verified p50 s':>24}  "
          "(median, min-max over rounds)")
    for name in gens:
        rate = spread([len(rows) / t for t in batched[name]])
        lg, lv = spread(lone_greedy[name]), spread(lone_verified[name])
        figures |= {f"{name} batched items/s": rate, f"{name} lone greedy p50 s": lg, f"{name} lone verified p50 s": lv}
        print(f"{name:>18} " + " ".join(f"{f['median']:>10.3g} ({f['min']:.3g}-{f['max']:.3g})".rjust(24)
                                        for f in (rate, lg, lv)))
    print(load_average())
    names = list(gens)
    write_result(
        "runtime_compare", figures,
        headline=[f"{n} batched items/s" for n in names] + [f"{n} lone greedy p50 s" for n in names]
        + [f"{n} greedy identical to torch %" for n in names if n != "torch"],
        config={"model": model_label(a.model), "test": str(test), "n": len(rows), "single": len(single),
                "repeats": a.repeats, "runtimes": names, "threads": a.threads, "batch_size": a.batch_size,
                "max_new_tokens": serve.max_new_tokens, "num_beams": serve.num_beams,
                "answer_vocab": serve.answer_vocab, "torch_precision": serve.precision,
                "precisions": {n: g.precision for n, g in gens.items()}},
        out_dir=a.out_dir,
    )


if __name__ == "__main__":
    main()
