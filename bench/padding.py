"""How much of a training batch is padding: the trainer's length-grouped order vs a random one.

    .venv/bin/python bench/padding.py                                   # data/datasets/smiles2iupac
    .venv/bin/python bench/padding.py --dataset data/datasets/smiles2formula --batch-size 32

Tokenizes the dataset's training split with the base model's tokenizer exactly as the train
stage does (`sft_data.encode_examples`), orders it with the sampler the trainer uses
(`sft_data.EpochLengthGroupedSampler`, `train.group_by_length: true`) and with a seeded random
permutation (`group_by_length: false`), cuts both into batches of `--batch-size`, pads each to
its longest example (`sft_data.Collator`; `sft_data.padding_ratio` counts), and prints the share of padded positions — the
compute that padding-free packing could save (issue 12: packing pays only above ~5%). Also
the share of positions that carry loss (completion tokens), which completion-only logits
already exploit. Needs a dataset: `dvc repro data@smiles2iupac` (or `seqtune data TASK`).
Writes the figures to reports/bench/padding.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, model_label, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    import pandas as pd
    from transformers import AutoTokenizer

    from seqtune import paths
    from seqtune.pipeline.sft_data import IGNORE_INDEX, EpochLengthGroupedSampler, encode_examples, padding_ratio

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=REPO / "data" / "datasets" / "smiles2iupac")
    ap.add_argument("--base-model", type=Path, default=REPO / paths.BASE_MODEL)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train = args.dataset / "train.parquet"
    if not train.exists():
        raise SystemExit(f"{train} not found: make the dataset first (`dvc repro data@<task>` or `seqtune data <task>`)")

    df = pd.read_parquet(train)
    tok = AutoTokenizer.from_pretrained(args.base_model)
    enc = encode_examples(tok, df.prompt.tolist(), df.completion.tolist(), args.max_length)
    lengths = [r["length"] for r in enc.rows]
    completion = sum(sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in enc.rows)

    grouped = list(EpochLengthGroupedSampler(args.batch_size, lengths, seed=args.seed))
    shuffled = list(range(len(lengths)))
    random.Random(args.seed).shuffle(shuffled)
    g_share = padding_ratio(lengths, grouped, args.batch_size)
    r_share = padding_ratio(lengths, shuffled, args.batch_size)
    n_batches = -(-len(lengths) // args.batch_size)

    print(f"dataset {args.dataset.relative_to(REPO) if args.dataset.is_relative_to(REPO) else args.dataset}: "
          f"{len(lengths)} examples ({enc.dropped} longer than {args.max_length} left out), "
          f"{n_batches} batches of {args.batch_size}")
    print(f"tokens per example: mean {sum(lengths) / len(lengths):.1f}, min {min(lengths)}, max {max(lengths)}; "
          f"completion tokens {completion / sum(lengths):.1%} of real tokens")
    print(f"padding, length-grouped order (group_by_length: true):  {g_share:.2%} of batch positions")
    print(f"padding, random order          (group_by_length: false): {r_share:.2%} of batch positions")
    print(f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    rel = args.dataset.relative_to(REPO) if args.dataset.is_relative_to(REPO) else args.dataset
    write_result("padding", {
        "padding_share_length_grouped": round(g_share, 4), "padding_share_random": round(r_share, 4),
        "examples": len(lengths), "dropped_longer_than_max_length": enc.dropped, "batches": n_batches,
        "tokens_per_example_mean": round(sum(lengths) / len(lengths), 1), "tokens_per_example_min": min(lengths),
        "tokens_per_example_max": max(lengths), "completion_token_share": round(completion / sum(lengths), 4),
    }, headline=["padding_share_length_grouped", "padding_share_random"], config={
        "dataset": str(rel), "base_model": model_label(args.base_model), "batch_size": args.batch_size,
        "max_length": args.max_length, "seed": args.seed})


if __name__ == "__main__":
    main()
