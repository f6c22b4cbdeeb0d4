"""Training throughput: seqtune's trainer vs a plain TRL SFTTrainer, same model/data/machine.

    .venv/bin/python bench/train_throughput.py                 # real SmolLM2-135M, ~1-2 min a side
    .venv/bin/python bench/train_throughput.py --model tiny    # a quick look at the mechanics

Both sides fine-tune the same base model on the same prompt/completion pairs (smiles2formula
in the instruction format) with the same batch size and number of examples, one after the
other in one process. seqtune runs its real stage (`seqtune.pipeline.train.main`, with per-epoch
evaluation off); TRL runs `SFTTrainer` configured as a user who cares about speed would
(`--trl tuned`, the default: no gradient checkpointing, completion-only loss, length-grouped
batches, bf16 where the hardware has it natively) or with its defaults (`--trl defaults`, which
turn gradient checkpointing on). TRL's `padding_free`/`packing` are left off: TRL supports them
only with flash-attention kernels, which CPUs don't have (with SDPA, packed examples could
attend across boundaries). Throughput = non-padding tokens trained / wall time of `train()`;
each side's final training loss is printed too (equal work should give an equal result).
Also printed: completion tokens/s (the tokens the loss is on), and the achieved model FLOP/s
(6 x parameters x tokens/s; attention's quadratic term is negligible at <= 128 tokens) as a
fraction of this CPU's matmul peak, measured by the same script in the dtype training uses
(bf16 where native, else fp32): a 2048^3 matmul, best of a few repetitions.
The two sides run `--repeats` alternating rounds (seqtune, TRL, seqtune, TRL, ...: each a fresh
model and a fresh epoch), so a burst of other work slows a round of each rather than one
side; medians and min-max are printed and written, with the ratio round by round, to
reports/bench/train_throughput.json (`common.write_result`).
Prints the 1/5/15-minute load averages: other work on the cores skews the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, base_model, matmul_peak, molecules, spread, write_result  # noqa: E402

TASK = "smiles2formula"


class StepClock(TrainerCallback):
    """Wall time of train() and of its optimizer steps (excludes eval/checkpoint time)."""

    def __init__(self):
        self.start = self.end = self.busy = 0.0
        self._t = None
        self.train_loss: float | None = None

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "train_loss" in logs:
            self.train_loss = float(logs["train_loss"])

    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.busy += time.perf_counter() - self._t

    def on_train_end(self, args, state, control, **kw):
        self.end = time.perf_counter()


def examples(n: int, fmt: str, seed: int) -> pd.DataFrame:
    from seqtune.inference.formats import render_completion, render_prompt
    from seqtune.tasks import get_task

    t = get_task(TASK)
    rows = [{"source": lab.source, "target": lab.target, "smiles": lab.source, "inchikey": "", "heavy_atoms": 0,
             "prompt": render_prompt(fmt, t, lab.source), "completion": render_completion(fmt, t, lab.target)}
            for lab in t.label(molecules(n, seed)) if lab.kept]
    return pd.DataFrame(rows)


def run_seqtune(work: Path, base: Path, df: pd.DataFrame, batch_size: int) -> StepClock:
    from seqtune import paths
    from seqtune.files import rows_sha256
    from seqtune.pipeline import train

    proj = work / "seqtune"
    (proj / "data").mkdir(parents=True)
    (proj / paths.BASE_MODEL).symlink_to(base.resolve(), target_is_directory=True)
    ds = proj / paths.dataset_dir(TASK)
    ds.mkdir(parents=True)
    df.to_parquet(ds / "train.parquet")
    df.head(1).to_parquet(ds / "test.parquet")
    (ds / "stats.json").write_text(json.dumps({"format": "instruction", "data_hash": rows_sha256(df.to_dict("records")), "test_hash": "-"}))
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"].update({"epochs": 1, "batch_size": batch_size, "val_size": 0, "save_steps": 10**6, "logging_steps": 10**6})
    (proj / "params.yaml").write_text(yaml.safe_dump(raw))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{proj / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        clock = StepClock()
        train.main(TASK, params=proj / "params.yaml", callbacks=[clock])
    finally:
        os.chdir(cwd)
    return clock


def run_trl(work: Path, base: Path, df: pd.DataFrame, batch_size: int, tuned: bool = True) -> StepClock:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from seqtune.inference.devices import native_bf16, pick_device

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    device = pick_device()
    # The optimisation seqtune's stage uses (params.yaml `train`), so that equal work should
    # reach an equal loss: TRL's own defaults (lr 2e-5, linear) would train a different model.
    tcfg = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    same = dict(learning_rate=tcfg["learning_rate"], lr_scheduler_type=tcfg["lr_scheduler"],
                warmup_steps=tcfg["warmup_ratio"], weight_decay=tcfg["weight_decay"], seed=tcfg["seed"])
    speed = dict(activation_checkpointing=False, completion_only_loss=True, train_sampling_strategy="group_by_length",
                 bf16=native_bf16(device), **same) if tuned else {}
    cfg = SFTConfig(output_dir=str(work / "trl"), per_device_train_batch_size=batch_size, num_train_epochs=1,
                    report_to=[], save_strategy="no", use_cpu=device.type == "cpu", **speed)
    clock = StepClock()
    trainer = SFTTrainer(model=model, args=cfg, processing_class=tok, callbacks=[clock],
                         train_dataset=Dataset.from_pandas(df[["prompt", "completion"]]))
    trainer.train()
    return clock


def n_parameters(base: Path) -> int:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    return sum(p.numel() for p in model.parameters())  # tied embeddings counted once


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in avg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m | gemma3-270m | tiny | a local path")
    ap.add_argument("--examples", type=int, default=192, help="training examples (one epoch each side)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["seqtune", "trl"], help="run one side only")
    ap.add_argument("--trl", choices=["tuned", "defaults"], default="tuned", help="how TRL is configured (see above)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of the two sides")
    a = ap.parse_args()

    from transformers import AutoTokenizer

    from seqtune.config import load_section
    from seqtune.log import setup_logging
    from seqtune.pipeline.sft_data import IGNORE_INDEX, encode_batch

    os.environ.setdefault("SEQTUNE_LOG", "WARNING")
    setup_logging()
    max_length = load_section("train", REPO / "params.yaml").max_length
    work = Path(tempfile.mkdtemp(prefix="seqtune-bench-"))
    try:
        base = base_model(a.model, work)
        df = examples(a.examples, "instruction", a.seed)
        # One token count for both sides: prompt + completion + EOS of every example, and only
        # examples within train.max_length (seqtune drops longer ones; TRL would keep them).
        rows = encode_batch(AutoTokenizer.from_pretrained(base), df.prompt, df.completion)
        keep = [r["length"] <= max_length for r in rows]
        df = df[keep].reset_index(drop=True)
        tokens = sum(r["length"] for r, k in zip(rows, keep) if k)
        completion_tokens = sum(sum(x != IGNORE_INDEX for x in r["labels"]) for r, k in zip(rows, keep) if k)
        flop_per_token = 6 * n_parameters(base)
        results: dict[str, list[float]] = {}
        steps_only: dict[str, list[float]] = {}
        losses: dict[str, list[float]] = {}
        for r in range(a.repeats):
            for side, fn in (("seqtune", run_seqtune), ("trl", run_trl)):
                if a.only and a.only != side:
                    continue
                round_dir = work / f"round-{r + 1}"
                load = os.getloadavg()
                clock = (fn(round_dir, base, df, a.batch_size, a.trl == "tuned") if side == "trl"
                         else fn(round_dir, base, df, a.batch_size))
                wall = clock.end - clock.start
                results.setdefault(side, []).append(tokens / wall)
                steps_only.setdefault(side, []).append(tokens / clock.busy)
                if clock.train_loss is not None:
                    losses.setdefault(side, []).append(clock.train_loss)
                after = os.getloadavg()
                print(f"{side:>8} round {r + 1}: {tokens:6d} tokens in {wall:6.1f} s = {tokens / wall:7.1f} tokens/s "
                      f"(steps only {tokens / clock.busy:7.1f}), {completion_tokens / wall:6.1f} completion tokens/s, "
                      f"{flop_per_token * tokens / wall / 1e9:6.1f} GFLOP/s, final train loss {clock.train_loss}; "
                      f"load 1/5/15 min before {_load(load)}, after {_load(after)}", flush=True)
                shutil.rmtree(round_dir, ignore_errors=True)
        print(f"model {a.model}, TRL {a.trl}, {len(df)} examples, batch {a.batch_size}, torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} cores, {a.repeats} alternating rounds; a 1-min load well above 1 during a side means shared cores")
        figures: dict = {}
        for side, rates in results.items():
            print(f"{side:>8}: {statistics.median(rates):7.1f} tokens/s ({min(rates):.1f}-{max(rates):.1f})")
            figures[f"{side}.tokens_per_s"] = spread(rates)
            figures[f"{side}.steps_only_tokens_per_s"] = spread(steps_only[side])
            figures[f"{side}.completion_tokens_per_s"] = spread([x * completion_tokens / tokens for x in rates])
            if losses.get(side):
                figures[f"{side}.final_train_loss"] = spread(losses[side])
        if len(results) == 2:
            ratios = [x / y for x, y in zip(results["seqtune"], results["trl"])]
            figures["ratio_seqtune_over_trl"] = spread(ratios)
            print(f"ratio seqtune/trl: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}, round by round; "
                  f"goal >= 1.5x against tuned TRL)")
        from seqtune.inference.devices import native_bf16, pick_device

        dtype = torch.bfloat16 if native_bf16(pick_device()) else torch.float32
        peak = matmul_peak(dtype)
        figures["matmul_peak_gflop_per_s"] = round(peak / 1e9, 1)
        for side, rates in results.items():
            share = flop_per_token * statistics.median(rates) / peak
            figures[f"{side}.share_of_matmul_peak"] = round(share, 4)
            print(f"{side:>8}: {share:.1%} of this CPU's {str(dtype).removeprefix('torch.')} "
                  f"matmul peak ({peak / 1e9:.0f} GFLOP/s; goal >= 50%)")
        headline = [k for k in ("ratio_seqtune_over_trl", "seqtune.tokens_per_s", "trl.tokens_per_s",
                                "seqtune.share_of_matmul_peak") if k in figures]
        write_result("train_throughput", figures, headline=headline, config={
            "model": a.model, "task": TASK, "format": "instruction", "examples": len(df), "tokens": tokens,
            "completion_tokens": completion_tokens, "batch_size": a.batch_size, "seed": a.seed, "trl": a.trl,
            "only": a.only, "repeats": a.repeats, "precision": str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads(), "parameters": flop_per_token // 6})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
