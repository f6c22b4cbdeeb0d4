"""Trainer callbacks of the `train@<task>` stage: MLflow logging and per-epoch generation.

    seqtune train smiles2formula      # these callbacks run inside it

transformers' own MLflow integration is switched off (`report_to=[]`) and replaced by
`MlflowLogger`, which logs into the one run the stage opened (and re-opens on resume):
loss, learning rate and grad norm every logging step, throughput (tokens/s of training
compute, excluding evaluation and checkpointing), eval loss per epoch. `GenerationEval`
scores test items by real generation after every epoch. Only rank 0 logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)

STEP_KEYS = {"loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm", "num_input_tokens_seen": "tokens_seen"}
"""Trainer log keys logged every logging step (Trainer name -> MLflow name)."""
FINAL_KEYS = ("train_runtime", "train_samples_per_second")
"""Keys of the Trainer's end-of-training summary (of this `train()` call: a resumed run's
session only, so its `train_loss` is left out)."""


def epoch_number(epoch: float | None) -> int:
    """The 1-based epoch a fractional epoch position belongs to (0.5 -> 1, 1.0 -> 1, 1.2 -> 2)."""
    return max(1, math.ceil((epoch or 0) - 1e-6))


class MlflowLogger(TrainerCallback):
    """Logs the Trainer's logs to one MLflow run through an `MlflowClient`."""

    def __init__(self, client, run_id: str | None):
        self.client = client
        self.run_id = run_id
        self._busy = 0.0
        self._tokens0 = 0
        self._step_start: float | None = None
        self._last = (0.0, 0)  # (busy seconds, tokens) at the previous logging step

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self.client is None or self.run_id is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if _finite(v)]
        self.client.log_batch(self.run_id, metrics=batch)

    def on_train_begin(self, args, state, control, **kw):
        self._busy = 0.0
        self._tokens0 = state.num_input_tokens_seen  # > 0 when resuming
        self._last = (0.0, state.num_input_tokens_seen)

    def on_step_begin(self, args, state, control, **kw):
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if self._step_start is not None:
            self._busy += time.perf_counter() - self._step_start
            self._step_start = None

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        if "eval_loss" in logs:
            self.log_metrics({"eval_loss": logs["eval_loss"]}, epoch_number(state.epoch))
        if "loss" in logs:
            metrics = {name: logs[key] for key, name in STEP_KEYS.items() if key in logs}
            busy, tokens = self._busy - self._last[0], state.num_input_tokens_seen - self._last[1]
            if busy > 0 and tokens > 0:
                metrics["tokens_per_s"] = tokens / busy
            self._last = (self._busy, state.num_input_tokens_seen)
            self.log_metrics(metrics, state.global_step)
        if "train_runtime" in logs and "loss" not in logs and "eval_loss" not in logs:
            metrics = {k: logs[k] for k in FINAL_KEYS if k in logs}
            if (tps := self.tokens_per_s(state)) is not None:
                metrics["train_tokens_per_s"] = tps
            self.log_metrics(metrics, state.global_step)

    @property
    def busy_seconds(self) -> float:
        """Seconds spent in training steps during this process's `train()` call."""
        return self._busy

    def tokens_per_s(self, state) -> float | None:
        """Non-padding tokens per second of training steps during this `train()` call."""
        tokens = state.num_input_tokens_seen - self._tokens0
        return round(tokens / self._busy, 1) if self._busy > 0 and tokens > 0 else None


class GenerationEval(TrainerCallback):
    """After every epoch's evaluation, generate for `examples` and log the task's metrics.

    The means go to MLflow as `val_<metric>` with step = epoch, and into the Trainer's
    `log_history` (saved with every checkpoint, so a resumed run still reports them)."""

    def __init__(self, *, tokenizer, task: str, fmt: str, examples: Sequence[Mapping[str, Any]],
                 max_new_tokens: int, batch_size: int, logger: MlflowLogger | None):
        import copy

        # Generation left-pads; a copy keeps the training collator's tokenizer untouched.
        self.tokenizer = copy.deepcopy(tokenizer)
        self.task, self.fmt = task, fmt
        self.examples = list(examples)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.logger = logger

    def on_evaluate(self, args, state, control, model=None, **kw):
        if not self.examples or model is None:
            return
        from seqtune.inference.generator import Generator
        from seqtune.tasks import get_task

        start = time.perf_counter()
        was_training = model.training
        # The model being trained, in memory (nothing to load: no `load_generator`): its fp32
        # master weights must stay as they are (a Generator casts its model to bf16 under
        # precision auto), so bf16 runs as autocast, as in training.
        gen = Generator(model, self.tokenizer, task=self.task, fmt=self.fmt, max_new_tokens=self.max_new_tokens,
                        batch_size=self.batch_size, precision="autocast" if args.bf16 else "fp32")
        try:
            preds = [p.output for p in gen.predict([e["source"] for e in self.examples])]
        finally:
            model.train(was_training)
        scores = get_task(self.task).score_batch(preds, self.examples)
        means = {f"val_{k}": sum(s[k] for s in scores) / len(scores) for k in scores[0]} if scores else {}
        epoch = epoch_number(state.epoch)
        state.log_history.append({**means, "epoch": state.epoch, "step": state.global_step, "n_val": len(scores)})
        if state.is_world_process_zero:
            log.info("epoch %d: %s (%d items, %.1fs)", epoch,
                     ", ".join(f"{k}={v:.3f}" for k, v in means.items()), len(scores), time.perf_counter() - start)
            if self.logger is not None:
                self.logger.log_metrics(means, epoch)


class SaveAfterEpochEval(TrainerCallback):
    """Writes a checkpoint that falls on an epoch's last step after that epoch's evaluation.

    The Trainer saves at the step, then evaluates at the epoch end; a resume from such a
    checkpoint would skip the epoch's evaluation and lose its metrics from epochs.json."""

    def __init__(self) -> None:
        self._deferred = False

    def on_step_end(self, args, state, control, **kw):
        epoch_done = abs((state.epoch or 0) - round(state.epoch or 0)) < 1e-6 or control.should_training_stop
        if control.should_save and epoch_done and args.eval_strategy == "epoch":
            control.should_save, self._deferred = False, True

    def on_epoch_end(self, args, state, control, **kw):
        if self._deferred:
            control.should_save, self._deferred = True, False


def epoch_records(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """epochs.json: one dict per epoch with mean training loss, eval loss and val_* metrics."""
    epochs: dict[int, dict[str, Any]] = {}
    losses: dict[int, list[float]] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        k = epoch_number(entry["epoch"])
        rec = epochs.setdefault(k, {"epoch": k})
        if "loss" in entry:
            losses.setdefault(k, []).append(float(entry["loss"]))
        if "eval_loss" in entry:
            rec["eval_loss"] = float(entry["eval_loss"])
        rec.update({key: float(v) for key, v in entry.items() if key.startswith("val_")})
    for k, vals in losses.items():
        epochs[k]["loss"] = sum(vals) / len(vals)
    return [epochs[k] for k in sorted(epochs)]


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
