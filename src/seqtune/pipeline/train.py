"""Stage `train@<task>`: fine-tune the base model on the task's instruction data.

    seqtune train smiles2formula                      # or: dvc repro train@smiles2formula
    python -m seqtune.train smiles2formula            # the same command, for launchers:
    accelerate launch --num_processes 4 -m seqtune.train smiles2iupac     # multi-GPU (DDP)
    torchrun --nproc_per_node 4 -m seqtune.train smiles2iupac              # the same with torchrun
    accelerate launch --config_file fsdp.yaml -m seqtune.train smiles2iupac  # FSDP (set train.val_size: 0)

Reads `data/base_model/` and `data/datasets/<task>/`, writes `data/models/<task>/` (merged
safetensors + tokenizer + seqtune.json + training_summary.json + epochs.json + run_id).
transformers' `Trainer` does the loop; peft adds LoRA for `train.method: lora` (merged into
the weights before saving, so evaluation and serving load every model the same way);
`train.freeze_layers: N` keeps the embeddings and the lower N decoder layers frozen
(`pipeline.frozen_layers`: the backward pass stops at layer N).

- Device CUDA > MPS > CPU; `train.precision: auto` trains in bf16 autocast where the
  hardware has native bf16 (CUDA Ampere+; CPUs with AVX512-BF16/AMX whose bf16 matmul measures
  faster: ~1.6x fp32 on an AVX512-BF16 EPYC; `seqtune.inference.precision`). The run logs why
  (param `precision_reason`, beside `bf16`).
- Length-grouped batches (`train.group_by_length`) keep padding waste low.
- Checkpoints every `train.save_steps` go to `data/checkpoints/<task>/` (not a DVC output,
  so they survive `dvc repro` removing outputs). A rerun resumes from the last one when it
  was made by the same training (params, data hash, base weights: a fingerprint stored
  there), ending at the same weights as an uninterrupted run; otherwise it starts fresh.
- One MLflow run per training (re-opened on resume); only rank 0 logs and writes outputs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import Trainer, TrainingArguments

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, LoraConfig, Params, TrainConfig, flatten, load_params
from seqtune.files import atomic_dir, rows_sha256, write_json, write_text
from seqtune.pipeline.cards import base_model_card, lineage_tags, warm_start_from
from seqtune.pipeline.completion_loss import completion_loss, supports_completion_loss
from seqtune.pipeline.frozen_layers import freeze_lower_layers
from seqtune.inference.cards import MODEL_CARD
from seqtune.inference.devices import native_bf16, pick_device, precision_reason
from seqtune.inference.precision import bf16_verdict
from seqtune.pipeline.sft_data import Collator, Encoded, EpochLengthGroupedSampler, answer_token_ids, encode_examples
from seqtune.pipeline.train_callbacks import GenerationEval, MlflowLogger, SaveAfterEpochEval, epoch_records
from seqtune.tasks import get_task
from seqtune.tracking import RESUMED_TAG

log = logging.getLogger(__name__)

FINGERPRINT = "seqtune_fingerprint.json"
"""File in the checkpoint folder: which training its checkpoints belong to, and its run id."""
REQUIRED_COLUMNS = ("source", "target", "smiles", "prompt", "completion")


class _Trainer(Trainer):
    """Trainer whose length-grouped order depends on (seed, epoch) only, so a resumed run
    replays exactly the batches an uninterrupted one sees."""

    def __init__(self, *a, lengths: list[int], completion_only_logits: bool = False, **kw):
        super().__init__(*a, **kw)
        self._lengths = lengths
        # Only where the model is called unwrapped: DDP/FSDP need their own forward to hook
        # gradient sync, so there the stock (full-logits) loss runs.
        self._completion_only = (completion_only_logits and self.args.world_size == 1
                                 and supports_completion_loss(self.model))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._completion_only or return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        return completion_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"], num_items_in_batch)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy == "group_by_length":
            bs = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return EpochLengthGroupedSampler(bs, self._lengths, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train in bf16 autocast: `auto` picks it where bf16 is native by fact
    (`devices.native_bf16`: CPU flags, then a measured matmul); `bf16` where it isn't is an
    error (an emulated bf16 training step ran 66 vs 266 tokens/s fp32 on an AVX512 Xeon
    without avx512_bf16)."""
    if precision == "fp32":
        return False
    ok = native_bf16(device)
    if precision == "bf16" and not ok:
        where = {"cuda": "an Ampere or newer GPU",
                 "cpu": f"a CPU with AVX512-BF16 or AMX (this one has {torch.backends.cpu.get_cpu_capability()})"}
        raise ValueError(f"train.precision: bf16 needs {where.get(device.type, 'CUDA or a CPU with native bf16')} "
                         f"({bf16_verdict(device).reason}): use auto or fp32")
    return ok


def set_threads(device: torch.device) -> int:
    """CPU threads from the machine (shared between local processes); OMP_NUM_THREADS wins."""
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, cores // local))
    return torch.get_num_threads()


def git_rev() -> str:
    from seqtune.tracking import repo_root

    root = repo_root()
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_dataset(task: str) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    folder = paths.dataset_dir(task)
    files = [folder / "stats.json", folder / "train.parquet", folder / "test.parquet"]
    if not all(f.exists() for f in files):
        raise FileNotFoundError(f"{folder} has no dataset: run `seqtune data {task}` (or `dvc repro data@{task}`) first")
    stats = json.loads(files[0].read_text())
    train, test = pd.read_parquet(files[1]), pd.read_parquet(files[2])
    for name, df in (("train", train), ("test", test)):
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{folder}/{name}.parquet lacks columns {missing}: rebuild it with `seqtune data {task}`")
    for key in ("format", "data_hash", "test_hash"):
        if key not in stats:
            raise ValueError(f"{folder}/stats.json lacks {key!r}: rebuild it with `seqtune data {task}`")
    return stats, train, test


def validation_set(task: str, test_df: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch validation examples: the dataset's validation split, kept apart from
    test so that choosing a lever on the curves never touches the test split. A dataset
    without one (molecules.val_fraction 0, as the fragment-split runs the sweep files pin)
    falls back to the head of the test split, as those runs did, with a warning."""
    path = paths.dataset_dir(task) / "val.parquet"
    val = pd.read_parquet(path) if path.exists() else None
    if val is not None and len(val):
        return val
    log.warning("%s: no validation split (molecules.val_fraction 0): the per-epoch curves use the head of the test split", task)
    return test_df


def fingerprint(task: str, cfg: TrainConfig, stats: dict[str, Any], base: dict[str, Any]) -> str:
    """What makes two trainings the same: checkpoints are reused only on an exact match."""
    return rows_sha256([{"task": task, "train": cfg.model_dump(), "format": stats["format"],
                         "data_hash": stats["data_hash"], "base_weights": base.get("weights_sha256")}])


def last_checkpoint(folder: Path) -> Path | None:
    """Newest complete checkpoint (trainer_state.json is the last file the Trainer writes)."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def resume_point(folder: Path, fp: str) -> tuple[Path | None, str | None]:
    """(checkpoint to resume from, its MLflow run id), or (None, None) after clearing a
    folder whose checkpoints belong to another training."""
    meta = folder / FINGERPRINT
    if not folder.exists():
        return None, None
    info = json.loads(meta.read_text()) if meta.exists() else {}
    if info.get("fingerprint") != fp:
        if any(folder.glob("checkpoint-*")):
            log.warning("%s holds checkpoints of another training (params, data or base model differ): starting fresh", folder)
        shutil.rmtree(folder)
        return None, None
    ckpt = last_checkpoint(folder)
    return ckpt, (info.get("run_id") if ckpt else None)


def apply_lora(model, lcfg: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig  # peft takes seconds to import: only here
    from peft import get_peft_model

    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in lcfg.target_modules if t in linear]
    if not targets:
        raise ValueError(f"train.lora.target_modules {lcfg.target_modules} match no linear layer of this model; "
                         f"its linear layers are {sorted(linear)}")
    skipped = sorted(set(lcfg.target_modules) - set(targets))
    if skipped:
        log.info("LoRA: this model has no %s layers; adapting %s", skipped, targets)
    pcfg = PeftLoraConfig(r=lcfg.r, lora_alpha=lcfg.alpha, lora_dropout=lcfg.dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, pcfg)


def open_run(p: Params, task: str, run_id: str | None, extra: dict[str, str]):
    """(client, run id): the resumed run when it still exists, else a new one; params logged."""
    from seqtune.tracking import setup_mlflow

    mlflow = setup_mlflow(p.mlflow.tracking_uri, p.mlflow.experiment)
    client = mlflow.MlflowClient()
    if run_id:
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            log.info("resuming MLflow run %s", run_id)
        except mlflow.exceptions.MlflowException:
            log.warning("MLflow run %s of the checkpoint is not in this store: logging into a new run", run_id)
            run_id = None
    if not run_id:
        exp = client.get_experiment_by_name(p.mlflow.experiment)
        run_id = client.create_run(exp.experiment_id, run_name=f"train-{task}",
                                   tags={"seqtune.task": task, "seqtune.stage": "train",
                                         "mlflow.source.git.commit": extra["git_rev"]}).info.run_id
    from mlflow.entities import Param

    have = client.get_run(run_id).data.params
    new = {k: v for k, v in (flatten(p.model_dump()) | extra).items() if k not in have}
    items = [Param(k, v) for k, v in new.items()]
    for i in range(0, len(items), 100):  # the store's limit per batch
        client.log_batch(run_id, params=items[i : i + 100])
    return client, run_id


def training_args(cfg: TrainConfig, out: Path, *, device: torch.device, bf16: bool, evaluate: bool) -> TrainingArguments:
    """The Trainer's settings: every knob from params.yaml's train section."""
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        seed=cfg.seed,
        bf16=bf16,
        use_cpu=device.type == "cpu",
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,  # the Trainer deletes the old one only after the new one is complete
        eval_strategy="epoch" if evaluate else "no",
        prediction_loss_only=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        report_to=[],  # we log to MLflow ourselves (MlflowLogger): nothing twice
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


# ---------------------------------------------------------------------------------------
# the stage, step by step: setup -> encode -> resume -> track -> build -> train -> save -> finish


@dataclass
class Setup:
    """What step 1 found and every later step reads: the params, the dataset, the base
    model's card and the hardware (device, precision, CPU threads)."""

    task: str
    p: Params
    stats: dict[str, Any]
    train_df: pd.DataFrame
    test_df: pd.DataFrame
    base: dict[str, Any]
    device: torch.device
    bf16: bool
    reason: str
    """Why bf16 is what it is (the verdict behind auto): param `precision_reason`."""
    threads: int

    @property
    def cfg(self) -> TrainConfig:
        return self.p.train

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"


@dataclass
class Examples:
    """Step 2's result: the base model's tokenizer, the encoded train examples, and the
    validation examples (as rows for the generation eval, encoded for the eval loss)."""

    tokenizer: Any
    train: Encoded
    val_df: pd.DataFrame
    val: Encoded


def setup(task: str, params: Path) -> Setup:
    """Step 1: read the params, the dataset and the base model's card; pick the device, its
    precision and the CPU threads. An unknown task or a missing dataset fails here."""
    p = load_params(params)
    get_task(task)  # unknown task -> a clear error before any work
    stats, train_df, test_df = read_dataset(task)
    base = base_model_card(paths.BASE_MODEL)
    device = pick_device()
    bf16 = use_bf16(p.train.precision, device)
    # Why: where auto chose fp32 on a CPU oneDNN calls bf16-capable, the run says so.
    reason = precision_reason(p.train.precision, "bf16" if bf16 else "fp32", device)
    return Setup(task, p, stats, train_df, test_df, base, device, bf16, reason, set_threads(device))


def encode_data(s: Setup) -> Examples:
    """Step 2: tokenize the train split (examples over train.max_length dropped, with a
    warning; an error when none is left) and the first train.val_size validation examples."""
    from transformers import AutoTokenizer

    cfg, train_df = s.cfg, s.train_df
    tokenizer = AutoTokenizer.from_pretrained(paths.BASE_MODEL)
    enc = encode_examples(tokenizer, train_df.prompt.tolist(), train_df.completion.tolist(), cfg.max_length)
    if not enc.rows:
        raise ValueError(f"all {len(train_df)} training examples are longer than train.max_length={cfg.max_length} tokens: raise it")
    if enc.dropped:
        log.warning("%d of %d training examples exceed train.max_length=%d tokens: dropped", enc.dropped, len(train_df), cfg.max_length)
    val_df = validation_set(s.task, s.test_df).head(cfg.val_size)
    val_enc = encode_examples(tokenizer, val_df.prompt.tolist(), val_df.completion.tolist(), cfg.max_length)
    return Examples(tokenizer, enc, val_df, val_enc)


def agree_resume(ckpt_dir: Path, fp: str, args: TrainingArguments) -> tuple[Path | None, str | None]:
    """Step 3: the checkpoint every rank resumes from (None: a fresh start) and, on rank 0,
    the MLflow run id it belongs to (`resume_point`)."""
    rank0 = args.process_index == 0
    # Rank 0 decides (and may clear a stale folder) before the others look.
    resume, run_id = resume_point(ckpt_dir, fp) if rank0 else (None, None)
    args.distributed_state.wait_for_everyone()
    if not rank0 and ckpt_dir.exists():
        resume = last_checkpoint(ckpt_dir)
    return resume, run_id


def run_params(s: Setup, ex: Examples) -> dict[str, str]:
    """The MLflow params beside params.yaml's: the data, the base model and its lineage, the
    code revision and the hardware."""
    stats, base = s.stats, s.base
    return {"task": s.task, "format": stats["format"], "data_hash": stats["data_hash"], "test_hash": stats["test_hash"],
            "base_model.source": str(base.get("source")), "base_model.weights_sha256": str(base.get("weights_sha256")),
            "base_model.params": str(base.get("params")),
            # A warm start's lineage: which registered version (and run) it continued.
            **lineage_tags(base),
            "git_rev": git_rev(), "device": s.device.type, "bf16": str(s.bf16), "train_examples": str(len(ex.train.rows)),
            "precision_reason": s.reason,  # why bf16 is what it is (the verdict behind auto)
            "dropped_too_long": str(ex.train.dropped)}


def start_tracking(s: Setup, ex: Examples, ckpt_dir: Path, fp: str, resume: Path | None,
                   run_id: str | None) -> tuple[Any, str]:
    """Step 4, rank 0 only: (client, run id) of the MLflow run, re-opened on resume, with
    every param logged; a resumed run is tagged, and the checkpoint folder gets the
    fingerprint that ties its checkpoints to this training and run."""
    client, run_id = open_run(s.p, s.task, run_id, run_params(s, ex))
    if resume:
        # The Trainer's train_runtime then counts only the time after the resume; the
        # report marks such runs instead of quoting a wrong total.
        before = client.get_run(run_id).data.tags.get(RESUMED_TAG)
        client.set_tag(run_id, RESUMED_TAG, ",".join(filter(None, [before, resume.name[11:]])))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(ckpt_dir / FINGERPRINT, {"fingerprint": fp, "run_id": run_id, "task": s.task})
    return client, run_id


def build_trainer(s: Setup, ex: Examples, args: TrainingArguments, client, run_id: str | None,
                  callbacks: Sequence[Any]) -> tuple[_Trainer, MlflowLogger]:
    """Step 5: the base model (LoRA-wrapped for train.method: lora) in a `_Trainer` with the
    MLflow logger, the per-epoch generation eval, saving after it, and `callbacks`."""
    from seqtune.inference.weights import load_causal_lm

    cfg, tokenizer = s.cfg, ex.tokenizer
    model = load_causal_lm(paths.BASE_MODEL, dtype=torch.float32)
    if cfg.method == "lora":
        model = apply_lora(model, cfg.lora)
    elif cfg.freeze_layers:
        freeze_lower_layers(model, cfg.freeze_layers)
    logger = MlflowLogger(client, run_id)
    gen_cb = GenerationEval(tokenizer=tokenizer, task=s.task, fmt=s.stats["format"], examples=ex.val_df.to_dict("records"),
                            max_new_tokens=ex.train.max_completion_tokens, batch_size=cfg.batch_size, logger=logger)
    trainer = _Trainer(
        model=model, args=args, train_dataset=ex.train.rows, eval_dataset=ex.val.rows or None,
        data_collator=Collator(tokenizer.pad_token_id), processing_class=tokenizer,
        callbacks=[logger, gen_cb, SaveAfterEpochEval(), *callbacks], lengths=[r["length"] for r in ex.train.rows],
        completion_only_logits=cfg.completion_only_logits,
    )
    return trainer, logger


def run_training(trainer: _Trainer, resume: Path | None, client, run_id: str | None) -> None:
    """Step 6: the training loop, from `resume` when there is one. A run that fails or is
    interrupted is marked FAILED or KILLED in MLflow before the error goes on."""
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except BaseException as e:
        if client is not None:
            client.set_terminated(run_id, status="KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise


def summarise(s: Setup, ex: Examples, trainer: _Trainer, logger: MlflowLogger, resume: Path | None,
              run_id: str | None) -> dict[str, Any]:
    """Step 7: the training summary (training_summary.json, and main's return value)."""
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    return {
        "task": s.task, "method": s.cfg.method, "base_model": s.base.get("name"), "format": s.stats["format"],
        "device": s.device.type, "precision": s.precision,
        "precision_reason": s.reason, "threads": s.threads, "world_size": trainer.args.world_size,
        "train_examples": len(ex.train.rows), "dropped_too_long": ex.train.dropped, "val_examples": len(ex.val.rows),
        "epochs": s.cfg.epochs, "steps": trainer.state.global_step, "freeze_layers": s.cfg.freeze_layers,
        "trainable_params": sum(p.numel() for p in {id(p): p for p in trainer.model.parameters()}.values()
                                if p.requires_grad),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "eval_loss": evals[-1] if evals else None, "tokens_seen": trainer.state.num_input_tokens_seen,
        "train_seconds": round(logger.busy_seconds, 2),
        "tokens_per_s": logger.tokens_per_s(trainer.state),
        "resumed_from_step": int(resume.name[11:]) if resume else None, "run_id": run_id,
    }


def model_card(s: Setup, ex: Examples) -> dict[str, Any]:
    """The model folder's seqtune.json: what evaluation, registry and serving read."""
    stats = s.stats
    return {"task": s.task, "format": stats["format"], "base_model": s.base.get("name"), "data_hash": stats["data_hash"],
            "test_hash": stats["test_hash"], "method": s.cfg.method, "warm_start_from": warm_start_from(s.base),
            # The tokens it learned to answer with: generation's LM head computes only these rows.
            "answer_token_ids": answer_token_ids(ex.train.rows)}


def main(task: str, *, params: Path = DEFAULT_PARAMS, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Fine-tune the base model on `task`; returns the training summary.

    `callbacks`: extra `TrainerCallback`s (tests use one to interrupt a run). The steps, in
    order: `setup`, `encode_data`, `agree_resume`, `start_tracking` (rank 0), `build_trainer`,
    `run_training`, `summarise`, `save_model`, then the run is marked finished."""
    s = setup(task, params)
    ex = encode_data(s)
    ckpt_dir = paths.checkpoint_dir(task)
    fp = fingerprint(task, s.cfg, s.stats, s.base)
    args = training_args(s.cfg, ckpt_dir, device=s.device, bf16=s.bf16, evaluate=bool(ex.val.rows))
    rank0 = args.process_index == 0
    resume, run_id = agree_resume(ckpt_dir, fp, args)
    client = None
    if rank0:
        client, run_id = start_tracking(s, ex, ckpt_dir, fp, resume, run_id)
    log.info("training %s on %s (%s, %d threads, %s): %d examples (%d too long, dropped), run %s%s",
             task, s.base.get("name"), s.device.type, s.threads, s.precision, len(ex.train.rows), ex.train.dropped,
             run_id, f", resuming from {resume.name}" if resume else "")

    trainer, logger = build_trainer(s, ex, args, client, run_id, callbacks)
    run_training(trainer, resume, client, run_id)
    summary = summarise(s, ex, trainer, logger, resume, run_id)
    files = {MODEL_CARD: model_card(s, ex), "training_summary.json": summary,
             "epochs.json": epoch_records(trainer.state.log_history)}
    save_model(trainer, ex.tokenizer, s.cfg.method, paths.model_dir(task), rank0, files, run_id)
    if rank0:
        client.set_terminated(run_id, status="FINISHED")
        log.info("%s: loss %.3f -> %.3f over %d steps; model in %s", task, summary["first_loss"] or float("nan"),
                 summary["last_loss"] or float("nan"), summary["steps"], paths.model_dir(task))
    return summary


def save_model(trainer, tokenizer, method: str, out: Path, rank0: bool, files: dict[str, Any], run_id: str | None) -> None:
    """Write the model folder atomically on rank 0 (LoRA merged into plain weights).

    Full fine-tuning goes through `trainer.save_model` on every rank, which gathers FSDP
    shards; only rank 0 writes."""
    if not rank0:
        if method != "lora":
            trainer.save_model()
        return
    with atomic_dir(out) as tmp:
        if method == "lora":
            trainer.model.merge_and_unload().save_pretrained(tmp)
        else:
            trainer.save_model(str(tmp))
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle: not part of the artifact
        tokenizer.save_pretrained(tmp)
        for name, obj in files.items():
            write_json(tmp / name, obj)
        write_text(tmp / paths.RUN_ID_FILE, str(run_id))
