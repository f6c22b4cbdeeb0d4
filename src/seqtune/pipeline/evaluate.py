"""Stage `evaluate@<task>`: score the saved fine-tuned model by real generation on the test set.

    seqtune evaluate smiles2iupac        # or: dvc repro evaluate@smiles2iupac

Loads the exact folder that gets registered and served (`data/models/<task>`), generates for
the first `evaluate.n_eval` test items (batched, left-padded, KV cache; greedy, beam or
verified beams), scores with the task plug-in, and puts the rule-based tool and the zero-shot
base model beside it on the same items. Then the same decoding on the first
`evaluate.n_real_per_band` real molecules of each heavy-atom band (stage real_molecules: real
compounds no training drew from), reported as `real` in the metrics. Writes
`metrics/<task>.json`, plot data and PNGs (`eval_plots`) under `plots/<task>/`, per-item results in
`data/predictions/<task>.jsonl` and `<task>.real.jsonl`, and logs all of it into the model's
training run in MLflow.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtune import paths
from seqtune.config import DEFAULT_PARAMS, EvaluateConfig, load_params
from seqtune.files import atomic_dir, atomic_path, rows_sha256, write_json
from seqtune.pipeline.eval_keys import GREEDY, RULE, ZERO_SHOT
from seqtune.pipeline.eval_plots import png_by_epoch, png_by_size, png_real
from seqtune.tasks import get_task

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# scoring helpers


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every per-item metric (keys of the first row)."""
    if not rows:
        return {}
    return {k: sum(float(r[k]) for r in rows) / len(rows) for k in rows[0]}


def bucket_label(heavy_atoms: int, edges: Sequence[int]) -> str:
    """`lo-hi` (inclusive) bucket of a heavy-atom count; below the first edge is `0-<e0-1>`,
    from the last edge up is `<e_last>+`."""
    lo = 0
    for edge in edges:
        if heavy_atoms < edge:
            return f"{lo}-{edge - 1}"
        lo = edge
    return f"{lo}+"


def by_size(
    heavy_atoms: Sequence[int], scores: Mapping[str, Sequence[Mapping[str, float]]], edges: Sequence[int], primary: str
) -> list[dict[str, Any]]:
    """Per non-empty bucket, in size order: n, every metric of the model (`scores["model"]`)
    and each baseline's primary metric (`<baseline>.<primary>`)."""
    labels = [bucket_label(int(h), edges) for h in heavy_atoms]
    order = [bucket_label(e - 1, edges) for e in edges] + [bucket_label(edges[-1], edges)]
    out = []
    for label in order:
        idx = [i for i, b in enumerate(labels) if b == label]
        if not idx:
            continue
        row: dict[str, Any] = {"heavy_atoms": label, "n": len(idx)}
        row.update(mean_metrics([scores["model"][i] for i in idx]))
        for name, rows in scores.items():
            if name != "model":
                row[f"{name}.{primary}"] = mean_metrics([rows[i] for i in idx])[primary]
        out.append(row)
    return out


def by_epoch(model_dir: Path) -> list[dict[str, Any]]:
    """The model folder's per-epoch record: {"epoch", numeric metrics...} per epoch."""
    path = model_dir / "epochs.json"
    if not path.exists():
        log.warning("%s not found: no per-epoch plot data", path)
        return []
    rows = json.loads(path.read_text())
    keep = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return [{k: v for k, v in r.items() if keep(v)} for r in rows if "epoch" in r]


# ---------------------------------------------------------------------------------------
# generation


def _require_base_model() -> None:
    if not (paths.BASE_MODEL / "config.json").exists():
        raise FileNotFoundError(
            f"no base model at {paths.BASE_MODEL} for the zero-shot baseline: run `seqtune base-model` "
            "(or `dvc repro`), or set evaluate.zero_shot_baseline: false"
        )


# ---------------------------------------------------------------------------------------
# the stage


def _load_inputs(task: str, n_eval: int) -> tuple[Path, dict, list[dict], dict]:
    import pandas as pd

    from seqtune.inference.cards import read_model_card

    model_dir = paths.model_dir(task)
    if not model_dir.exists():
        raise FileNotFoundError(
            f"no fine-tuned model for {task} at {model_dir}: run `seqtune train {task}` (or `dvc repro`) first"
        )
    card = read_model_card(model_dir)
    if card.get("task") != task:
        raise ValueError(f"{model_dir} holds a {card.get('task')!r} model, not {task!r}; retrain it")
    test = paths.dataset_dir(task) / "test.parquet"
    if not test.exists():
        raise FileNotFoundError(f"no test set for {task} at {test}: run `seqtune data {task}` (or `dvc repro`) first")
    stats_path = paths.dataset_dir(task) / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    rows = pd.read_parquet(test).head(n_eval).to_dict("records")
    if not rows:
        raise ValueError(f"{test} has no rows: rebuild the data with `seqtune data {task}`")
    return model_dir, card, rows, stats


def _load_real(task: str, per_band: int) -> list[dict]:
    """The first `per_band` labelled real molecules of each band (data stage's real.parquet,
    bands in size order); [] when there are none or `per_band` is 0."""
    import pandas as pd

    path = paths.dataset_dir(task) / "real.parquet"
    if not per_band or not path.exists():
        if per_band:
            log.warning("%s: no real molecules at %s: no real-molecule bands (rebuild with `dvc repro`)", task, path)
        return []
    real = pd.read_parquet(path)
    if real.empty:
        return []
    real = real.assign(_lo=real.band.str.split("-").str[0].astype(int)).sort_values("_lo", kind="stable")
    return real.groupby("band", sort=False).head(per_band).drop(columns="_lo").to_dict("records")


def real_bands(rows: Sequence[Mapping], scores: Sequence[Mapping[str, float]], preds) -> dict[str, dict[str, Any]]:
    """Per band, in size order: n and the mean of every per-item metric (and the verified
    share when the decoding checks its answers)."""
    out: dict[str, dict[str, Any]] = {}
    for band in dict.fromkeys(r["band"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["band"] == band]
        out[band] = {"n": len(idx), **mean_metrics([scores[i] for i in idx])}
        if preds[idx[0]].verified is not None:
            out[band]["verified_rate"] = sum(bool(preds[i].verified) for i in idx) / len(idx)
    return out


@dataclass
class Generated:
    """What the generation steps produced, for scoring, writing and logging."""

    outputs: dict[str, list[str]]
    """Per test item: "model", and GREEDY, RULE, ZERO_SHOT where they ran."""
    preds: list
    """The model's `Prediction` per test item (output, verified)."""
    real_rows: list[dict]
    real_preds: list
    seconds: float
    greedy_seconds: float | None
    precision: str
    precision_reason: str
    answer_vocab: Any


def fair_decoding(t, task: str, cfg: EvaluateConfig) -> str:
    """The decoding that runs: evaluate.decoding, but `verified` only where the task's check
    does not itself answer (Task.verified_decoding)."""
    decoding = t.decoding_for(cfg.decoding)
    if decoding != cfg.decoding:
        log.info("%s: evaluate.decoding %s is not a fair decoding for this task (its check is the rule-based "
                 "answer): decoding %s", task, cfg.decoding, decoding)
    return decoding


def generate(task: str, model_dir: Path, sources: list[str], cfg: EvaluateConfig, decoding: str) -> Generated:
    """Step 1: the fine-tuned model's answers on the test items (and plain greedy's beside
    verified beams), then on the real molecules; timed for MLflow. The generator batches
    (length-sorted, one progress step per batch) and applies the fair-decoding rule itself."""
    from seqtune.inference.loader import load_generator

    gen = load_generator(model_dir, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, precision=cfg.precision,
                         answer_vocab=cfg.answer_vocab)
    ran = (gen.precision, gen.precision_reason, gen.answer_vocab)
    t0 = time.perf_counter()
    preds = gen.predict(sources, decoding=decoding, num_beams=cfg.num_beams, progress=task)
    seconds = time.perf_counter() - t0
    outputs = {"model": [pr.output for pr in preds]}
    greedy_seconds = None
    if decoding == "verified":
        # The gain of verified beams is only visible next to plain greedy on the same items,
        # and their cost only next to greedy's time for them.
        t0 = time.perf_counter()
        outputs[GREEDY] = [pr.output for pr in gen.predict(sources, decoding="greedy", progress=f"{task} greedy")]
        greedy_seconds = time.perf_counter() - t0
    real_rows = _load_real(task, cfg.n_real_per_band)
    real_preds = []
    if real_rows:
        log.info("scoring %d real molecules (%s decoding) by band", len(real_rows), decoding)
        real_preds = gen.predict([r["source"] for r in real_rows], decoding=decoding, num_beams=cfg.num_beams,
                                 progress=f"{task} real")
    return Generated(outputs, preds, real_rows, real_preds, seconds, greedy_seconds, *ran)


def generate_baselines(task: str, t, fmt: str, sources: list[str], cfg: EvaluateConfig, outputs: dict[str, list[str]]) -> None:
    """Step 2: the rule-based tool's answers (where the task has one) and the zero-shot base
    model's (evaluate.zero_shot_baseline) on the same test items, added to `outputs`."""
    rule = t.baseline(sources)
    if rule is not None:
        outputs[RULE] = [o or "" for o in rule]
    if cfg.zero_shot_baseline:
        from seqtune.inference.loader import load_generator

        _require_base_model()
        # The base model has no seqtune.json: it is asked in the fine-tuned model's format,
        # through the same loader and Generator code, with the full head.
        base = load_generator(paths.BASE_MODEL, card={"task": task, "format": fmt}, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.batch_size, precision=cfg.precision)
        outputs[ZERO_SHOT] = [pr.output for pr in base.predict(sources, decoding="greedy", progress=f"{task} zero-shot")]
        del base


def compute_metrics(task: str, t, cfg: EvaluateConfig, rows: list[dict], stats: dict, card: dict, decoding: str,
                    g: Generated, scores: dict[str, list[dict]], real_scores: list[dict]) -> dict[str, Any]:
    """Step 3: the metrics (metrics/<task>.json) from the per-item scores: the model's means,
    the test set's hashes, verified decoding's gain over greedy, each baseline's means and
    the real molecules by band."""
    primary = t.primary_metric
    metrics: dict[str, Any] = {
        "task": task,
        "n": len(rows),
        "decoding": decoding,
        "precision": g.precision,
        "num_beams": cfg.num_beams,
        "max_new_tokens": cfg.max_new_tokens,
        "batch_size": cfg.batch_size,
        "primary_metric": primary,
        **mean_metrics(scores["model"]),
        "test_hash": stats.get("test_hash") or card.get("test_hash"),
        "data_hash": card.get("data_hash") or stats.get("data_hash"),
        # The exact items scored: a different n_eval is a different test set for the registry.
        "eval_hash": rows_sha256([(r["source"], r["target"]) for r in rows]),
    }
    if decoding == "verified":
        metrics["verified_rate"] = sum(bool(pr.verified) for pr in g.preds) / len(g.preds)
        metrics[GREEDY] = mean_metrics(scores[GREEDY])
        metrics["verified_gain"] = metrics[primary] - metrics[GREEDY][primary]
    for name in (RULE, ZERO_SHOT):
        if name in scores:
            metrics[name] = mean_metrics(scores[name])
    if g.real_rows:
        # Real molecules no training drew from, by heavy-atom band (stage real_molecules).
        metrics["real"] = real_bands(g.real_rows, real_scores, g.real_preds)
        metrics["real_hash"] = rows_sha256([(r["source"], r["target"], r["band"]) for r in g.real_rows])
    return metrics


def _baselines(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Each baseline's primary metric (the plots' lines, the last log line)."""
    return {n: metrics[n][metrics["primary_metric"]] for n in (RULE, ZERO_SHOT) if n in metrics}


def write_outputs(task: str, model_dir: Path, cfg: EvaluateConfig, rows: list[dict], g: Generated,
                  scores: dict[str, list[dict]], real_scores: list[dict], metrics: dict[str, Any]) -> None:
    """Step 4: per-item predictions, plot data and PNGs, metrics last (`_write_real`, `_write`)."""
    epochs = by_epoch(model_dir)
    sizes = by_size([int(r["heavy_atoms"]) for r in rows], {k: v for k, v in scores.items() if k != GREEDY},
                    cfg.size_buckets, metrics["primary_metric"])
    _write_real(task, g.real_rows, g.real_preds, real_scores, metrics)
    _write(task, rows, g.outputs, scores, g.preds, metrics, epochs, sizes, _baselines(metrics))


def log_to_mlflow(mlflow, task: str, model_dir: Path, cfg: EvaluateConfig, decoding: str, g: Generated,
                  metrics: dict[str, Any]) -> None:
    """Step 5: settings, metrics, timings and the written files into the model's training run."""
    from seqtune.pipeline.registry_store import flat_metrics, start_model_run

    n = metrics["n"]
    with start_model_run(model_dir, run_name=f"evaluate-{task}"):
        # Tags, not params: a re-evaluation with other settings logs into the same training
        # run, and MLflow refuses to change a logged param.
        # evaluate.decoding: the decoding that ran (verified asked of a task it is not fair for ran greedy).
        mlflow.set_tags({f"evaluate.{k}": v for k, v in cfg.model_dump().items()}
                        | {"evaluate.decoding": decoding, "evaluate.precision": g.precision,
                           # why (the verdict behind auto): MLflow only, as it quotes a timing
                           "evaluate.precision_reason": g.precision_reason,
                           # the head that ran: the card may record no answer vocabulary
                           "evaluate.answer_vocab": str(g.answer_vocab or "full")})
        mlflow.log_metrics({f"eval.{k}": v for k, v in flat_metrics(metrics).items()})
        # Timings go to MLflow only: metrics/TASK.json must not change when the same model
        # is evaluated again (DVC outputs, the kill-and-resume test).
        mlflow.log_metric("eval.items_per_s", n / max(g.seconds, 1e-9))
        if g.greedy_seconds is not None:
            mlflow.log_metric("eval.greedy.items_per_s", n / max(g.greedy_seconds, 1e-9))
        mlflow.log_artifact(str(paths.metrics_path(task)), "evaluation")
        mlflow.log_artifact(str(paths.predictions_path(task)), "evaluation")
        mlflow.log_artifact(str(paths.real_predictions_path(task)), "evaluation")
        mlflow.log_artifacts(str(paths.plots_dir(task)), "evaluation/plots")


def main(task: str, *, params: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Run the stage; returns the metrics written to metrics/<task>.json.

    Inputs and the MLflow store are checked first, then the steps: `generate`,
    `generate_baselines`, the task's per-item scores, `compute_metrics`, `write_outputs`,
    `log_to_mlflow`."""
    from seqtune.tracking import setup_mlflow

    p = load_params(params)
    cfg, mcfg = p.evaluate, p.mlflow
    t = get_task(task)
    model_dir, card, rows, stats = _load_inputs(task, cfg.n_eval)
    if cfg.zero_shot_baseline:
        _require_base_model()  # fail before minutes of generation, not after
    mlflow = setup_mlflow(mcfg.tracking_uri, mcfg.experiment)  # likewise: a broken store fails now
    sources = [r["source"] for r in rows]
    decoding = fair_decoding(t, task, cfg)
    log.info("evaluating %s on %d test items (%s decoding)", model_dir, len(rows), decoding)

    g = generate(task, model_dir, sources, cfg, decoding)
    generate_baselines(task, t, card["format"], sources, cfg, g.outputs)
    scores = {name: t.score_batch(outs, rows) for name, outs in g.outputs.items()}
    real_scores = t.score_batch([pr.output for pr in g.real_preds], g.real_rows) if g.real_rows else []
    metrics = compute_metrics(task, t, cfg, rows, stats, card, decoding, g, scores, real_scores)
    write_outputs(task, model_dir, cfg, rows, g, scores, real_scores, metrics)
    log_to_mlflow(mlflow, task, model_dir, cfg, decoding, g, metrics)
    log.info("%s: %s = %.4f (%s)", task, t.primary_metric, metrics[t.primary_metric],
             ", ".join(f"{n} {v:.4f}" for n, v in _baselines(metrics).items()) or "no baselines")
    return metrics


def _write_real(task, rows, preds, scores, metrics) -> None:
    """Per-item real-molecule results and the by-band plot data (`_write` draws its PNG and
    puts metrics last). Written empty when there are none, so DVC's outputs exist."""
    with atomic_path(paths.real_predictions_path(task)) as tmp, open(tmp, "w") as f:
        for r, pr, sc in zip(rows, preds, scores):
            item = {"source": r["source"], "target": r["target"], "smiles": r["smiles"], "band": r["band"],
                    "heavy_atoms": int(r["heavy_atoms"]), "prediction": pr.output, **sc}
            if pr.verified is not None:
                item["verified"] = pr.verified
            f.write(json.dumps(item) + "\n")
    write_json(paths.plots_dir(task) / "real_by_band.json", [{"band": b, **v} for b, v in metrics.get("real", {}).items()])


def _write(task, rows, outputs, scores, preds, metrics, epochs, sizes, baselines) -> None:
    """Every output, each atomically; metrics last (DVC's sign that the stage finished)."""
    primary = metrics["primary_metric"]
    with atomic_path(paths.predictions_path(task)) as tmp, open(tmp, "w") as f:
        for i, r in enumerate(rows):
            item = {"source": r["source"], "target": r["target"], "smiles": r["smiles"], "heavy_atoms": int(r["heavy_atoms"]),
                    "prediction": outputs["model"][i], **scores["model"][i]}
            if preds[i].verified is not None:
                item["verified"] = preds[i].verified
            item.update({name: outs[i] for name, outs in outputs.items() if name != "model"})
            f.write(json.dumps(item) + "\n")
    plots = paths.plots_dir(task)
    write_json(plots / "by_epoch.json", epochs)
    write_json(plots / "by_size.json", sizes)
    with atomic_dir(plots / "png") as png:
        png_by_epoch(png / "by_epoch.png", epochs, primary, baselines)
        png_by_size(png / "by_size.png", sizes, primary, ["model", *[n for n in (RULE, ZERO_SHOT) if n in metrics]])
        if metrics.get("real"):
            png_real(png / "real_by_band.png", [{"band": b, **v} for b, v in metrics["real"].items()], primary)
    write_json(paths.metrics_path(task), metrics)
