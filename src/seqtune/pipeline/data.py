"""Stage `data@<task>`: label molecules with a task and write instruction datasets.

    seqtune data smiles2iupac        # or: dvc repro data@smiles2iupac

Reads `data/molecules/molecules.parquet` (sorted by split hash) and labels train-split
molecules in that order (or, with `data.sample: size_balanced`, dealt round-robin over
heavy-atom counts), chunk by chunk, until `data.n_train` are kept, then test-split
molecules in hash order until `data.n_test` are kept. So the train set for n_train=1000 is a
prefix of the one for n_train=3000, and every n_train and sample shares the same test set.
With `data.smiles_variants: k` a SMILES-input task writes k train examples per molecule: the
canonical SMILES and k - 1 randomized spellings of it, with the same target.

Validation examples come from the molecules stage's validation split the same way (`data.n_val`;
none when it has no such split), and every real molecule of the `real_molecules` stage is
labelled too (`real.parquet`, with its heavy-atom band): evaluation scores the model on them
by band.

Writes `data/datasets/<task>/{train,val,test,real}.parquet` (source, target, smiles, inchikey,
heavy_atoms, prompt, completion; real adds band) and `stats.json` (format, counts kept/dropped
by reason, target lengths, timing, `data_hash` of the train rows, `test_hash` of the test set,
`val_hash` and `real_hash`).

Labels are cached in `data/cache/labels/labels.sqlite`, keyed by task, labeller version and
SMILES: re-runs and larger n_train label only new molecules, with identical results.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from seqtune import paths
from seqtune.chem import random_smiles
from seqtune.config import DEFAULT_PARAMS, DataConfig, load_section
from seqtune.files import atomic_dir, rows_sha256, write_json
from seqtune.inference.formats import render_completion, render_prompt
from seqtune.tasks import get_task
from seqtune.tasks.base import Labelled, Task

log = logging.getLogger(__name__)

COLUMNS = ["source", "target", "smiles", "inchikey", "heavy_atoms", "prompt", "completion"]
PIPELINE_DEPTH = 2
"""Chunks in flight: one verifying (OPSIN, a JVM subprocess) while the next is named."""
TEST_SET_FIELDS = ("source", "target", "smiles")
"""What identifies the test set: the prompt format is not part of it, so models trained with
different formats are still compared on the same test set."""


class LabelCache:
    """Task labels keyed by (task, labeller version, SMILES) in one sqlite file."""

    def __init__(self, path: Path, task: str, version: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS labels (task TEXT, version TEXT, smiles TEXT, source TEXT, "
            "target TEXT, reason TEXT, PRIMARY KEY (task, version, smiles))"
        )
        self.task, self.version = task, version

    def get(self, smiles: Sequence[str]) -> dict[str, Labelled]:
        found: dict[str, Labelled] = {}
        for i in range(0, len(smiles), 500):  # sqlite's limit on bound parameters
            part = list(smiles[i : i + 500])
            q = f"SELECT smiles, source, target, reason FROM labels WHERE task=? AND version=? AND smiles IN ({','.join('?' * len(part))})"
            for smi, src, tgt, reason in self.db.execute(q, [self.task, self.version, *part]):
                found[smi] = Labelled(source=src, target=tgt, reason=reason)
        return found

    def put(self, labels: dict[str, Labelled]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
            [(self.task, self.version, s, lab.source, lab.target, lab.reason) for s, lab in labels.items()],
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def _start_label(labeller: Task, smiles: list[str], workers: int, executor: Executor) -> Future[list[Labelled]]:
    """Label `smiles`, leaving any slow verification running on `executor` when the task can."""
    start = getattr(labeller, "label_async", None)
    if start is not None:
        return start(smiles, workers=workers, executor=executor)
    done: Future[list[Labelled]] = Future()
    done.set_result(labeller.label(smiles, workers=workers))
    return done


def _labeller(task: Task):
    """(the task that labels, how its labels become `task`'s)."""
    # A derived task (iupac2smiles) labels through its base task and turns the labels around.
    base = getattr(task, "label_base", None)
    labeller = get_task(base) if base else task
    derive = task.from_base if base else (lambda lab: lab)  # type: ignore[attr-defined]
    return labeller, derive


_Inflight = deque[tuple[list[dict], dict[str, Labelled], list[str], Future | None]]
"""(chunk, cached labels, labelled SMILES, future of their labels), in molecule order."""


def _fill(inflight: _Inflight, records: list[dict], pos: int, still_needed: int, labeller: Task, cfg: DataConfig,
          cache: LabelCache | None, verifier: Executor) -> int:
    """Start labelling chunks from `records[pos:]` until PIPELINE_DEPTH are in flight;
    returns the position after the last one started."""
    # Keep PIPELINE_DEPTH chunks in flight, sized by what is still needed assuming
    # the in-flight ones are all kept (+10% slack for drops).
    while len(inflight) < PIPELINE_DEPTH and pos < len(records):
        need = still_needed - sum(len(c) for c, *_ in inflight)
        if need <= 0:
            break
        chunk = records[pos : pos + min(cfg.chunk_size, math.ceil(need * 1.1) + 8)]
        pos += len(chunk)
        smiles = [m["smiles"] for m in chunk]
        cached = cache.get(smiles) if cache else {}
        misses = [s for s in dict.fromkeys(smiles) if s not in cached]
        fut = _start_label(labeller, misses, cfg.workers, verifier) if misses else None
        inflight.append((chunk, cached, misses, fut))
    return pos


def _take(inflight: _Inflight, cache: LabelCache | None, timing: dict) -> tuple[list[dict], dict[str, Labelled]]:
    """The oldest in-flight chunk and every label of it, waiting for its fresh labels (which
    go to the cache); counts them in `timing`."""
    chunk, labels, misses, fut = inflight.popleft()
    timing["cached"] += len(labels)
    if fut is not None:
        fresh = dict(zip(misses, fut.result()))
        timing["labelled"] += len(misses)
        timing["labelled_kept"] += sum(lab.kept for lab in fresh.values())
        if cache:
            cache.put(fresh)
        labels = {**labels, **fresh}
    return chunk, labels


def _keep(chunk: list[dict], labels: dict[str, Labelled], derive, n: int, rows: list[dict], dropped: Counter, bar) -> None:
    """Append the chunk's labelled molecules to `rows`, in order, until it holds `n`; count
    the others in `dropped` by reason."""
    for m in chunk:
        if len(rows) == n:
            break
        lab = derive(labels[m["smiles"]])
        if not lab.kept:
            dropped[lab.reason or "unknown"] += 1
            continue
        rows.append(
            {
                "source": lab.source,
                "target": lab.target,
                "smiles": m["smiles"],
                "inchikey": m["inchikey"],
                "heavy_atoms": int(m["heavy_atoms"]),
            }
        )
        bar.update(1)


def collect(
    mols: pd.DataFrame, n: int, task: Task, cfg: DataConfig, cache: LabelCache | None, *, desc: str
) -> tuple[list[dict], Counter, dict]:
    """The first `n` molecules of `mols` (in its order) that the task can label.

    Labels chunk by chunk, one chunk verifying in the background while the next is labelled
    (`_fill` starts chunks, `_take` waits for the oldest, `_keep` keeps its labelled rows).
    A chunk is never much larger than what is still needed, so small requests stay cheap, and
    the result is the same whatever the chunking. Returns rows, drop counts by reason and
    counters for the stats."""
    rows: list[dict] = []
    dropped: Counter = Counter()
    timing = {"labelled": 0, "labelled_kept": 0, "cached": 0, "label_seconds": 0.0}
    labeller, derive = _labeller(task)
    records = mols.to_dict("records")
    pos = 0
    inflight: _Inflight = deque()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as verifier, tqdm(total=n, desc=desc, unit="ex", mininterval=1.0) as bar:
        while len(rows) < n:
            pos = _fill(inflight, records, pos, n - len(rows), labeller, cfg, cache, verifier)
            if not inflight:
                break
            chunk, labels = _take(inflight, cache, timing)
            _keep(chunk, labels, derive, n, rows, dropped, bar)
        # Chunks labelled ahead but not needed still go to the cache (a larger n_train uses them).
        for _chunk, _labels, misses, fut in inflight:
            if fut is not None and cache:
                cache.put(dict(zip(misses, fut.result())))
    if timing["labelled"]:
        timing["label_seconds"] = time.perf_counter() - t0
    return rows, dropped, timing


def _load_tokenizer(fmt: str):
    if fmt != "chat":
        return None
    if not (paths.BASE_MODEL / "tokenizer_config.json").exists():
        raise FileNotFoundError(
            f"data.format 'chat' uses the base model's chat template, but {paths.BASE_MODEL} has no tokenizer: "
            "run `seqtune base-model` (or `dvc repro base_model`) first"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paths.BASE_MODEL)


def _length_stats(values: list[int]) -> dict:
    if not values:
        return {}
    s = pd.Series(values)
    return {"min": int(s.min()), "mean": round(float(s.mean()), 2), "p95": int(s.quantile(0.95)), "max": int(s.max())}


def train_order(mols: pd.DataFrame, sample: str) -> pd.DataFrame:
    """Train molecules in the order `collect` takes them (`data.sample`).

    `size_balanced` deals them out round-robin over heavy-atom counts, smallest first, each
    count in hash order: any prefix holds every size equally (to one molecule) until a size
    runs out, and a larger n_train still only adds (each size's share is a hash-order prefix
    that grows)."""
    if sample == "hash":
        return mols
    rank = mols.groupby("heavy_atoms", sort=False).cumcount()
    return mols.assign(_rank=rank).sort_values(["_rank", "heavy_atoms"], kind="stable").drop(columns="_rank")


def with_smiles_variants(rows: list[dict], variants: int) -> list[dict]:
    """Each train row followed by `variants - 1` copies whose source is a randomized SMILES of
    the same molecule (same target): augmentation that teaches the answer belongs to the
    structure, not to RDKit's one canonical spelling. Seeded by InChIKey, so a molecule gets
    the same spellings whatever else is in the set (growing n_train still only adds)."""
    out: list[dict] = []
    for r in rows:
        # Below 2**31: RDKit treats a larger randomSeed as "unseeded" (a new spelling every run).
        seed = int(hashlib.sha256(r["inchikey"].encode()).hexdigest()[:8], 16) % (2**31 - 1)
        out.append(r)
        out.extend({**r, "source": s} for s in random_smiles(r["source"], variants - 1, seed))
    return out


_NO_TIMING = {"labelled": 0, "labelled_kept": 0, "cached": 0, "label_seconds": 0.0}


def collect_real(task: Task, cfg: DataConfig, cache: LabelCache | None, *, desc: str) -> tuple[list[dict], Counter, dict]:
    """Every molecule of the real_molecules stage that `task` can label, each with its band:
    labelled like the test set (so exact match has a reference), never trained on. Empty when
    that stage wrote none (`real_molecules.source: none`) or has not run (outside DVC, which
    runs it first: a warning, since evaluation then has no real-molecule bands)."""
    path = paths.REAL_MOLECULES / "molecules.parquet"
    if not path.exists():
        log.warning("%s not found: no real-molecule bands for %s (run `seqtune real-molecules` first)", path, task.name)
        return [], Counter(), dict(_NO_TIMING)
    mols = pd.read_parquet(path)
    if mols.empty:
        return [], Counter(), dict(_NO_TIMING)
    rows, dropped, timing = collect(mols, len(mols), task, cfg, cache, desc=desc)
    band = dict(zip(mols.inchikey, mols.band))
    return [{**r, "band": band[r["inchikey"]]} for r in rows], dropped, timing


@dataclass
class Split:
    """One split's labelled rows, its drops by reason and its labelling counters (`collect`)."""

    rows: list[dict]
    dropped: Counter
    timing: dict


def load_molecules() -> tuple[pd.DataFrame, Path]:
    """The molecules stage's molecules in split-hash order, and the file they came from."""
    mol_file = paths.MOLECULES / "molecules.parquet"
    if not mol_file.exists():
        raise FileNotFoundError(f"{mol_file} not found: run `seqtune molecules` (or `dvc repro molecules`) first")
    mols = pd.read_parquet(mol_file)
    # The molecules stage writes hash order already; sorting again makes it a contract here.
    return mols.sort_values(["hash", "inchikey"], kind="stable"), mol_file


def label_splits(task: str, mols: pd.DataFrame, t: Task, cfg: DataConfig, cache: LabelCache | None) -> dict[str, Split]:
    """Step 1: label train (in `data.sample` order), test, val and real molecules, in that
    order, through `cache`, which is closed afterwards. Returns them as train, val, test, real."""
    try:
        train_mols = train_order(mols[mols.split == "train"], cfg.sample)
        train = Split(*collect(train_mols, cfg.n_train, t, cfg, cache, desc=f"{task} train"))
        test = Split(*collect(mols[mols.split == "test"], cfg.n_test, t, cfg, cache, desc=f"{task} test"))
        val_mols = mols[mols.split == "val"]
        val = Split(*(collect(val_mols, cfg.n_val, t, cfg, cache, desc=f"{task} val")
                      if len(val_mols) and cfg.n_val else ([], Counter(), _NO_TIMING)))
        real = Split(*collect_real(t, cfg, cache, desc=f"{task} real"))
    finally:
        if cache:
            cache.close()
    return {"train": train, "val": val, "test": test, "real": real}


def check_counts(task: str, splits: dict[str, Split], cfg: DataConfig, n_mols: int, mol_file: Path) -> None:
    """Step 2: an error when train or test is empty, a warning when either is short of its n."""
    for name, n in (("train", cfg.n_train), ("test", cfg.n_test)):
        rows = splits[name].rows
        if not rows:
            raise ValueError(
                f"{task}: no {name} examples could be labelled from {n_mols} molecules in {mol_file}; "
                "use more molecules (molecules.max_raw) or check the molecule source"
            )
        if len(rows) < n:
            log.warning(
                "%s: only %d %s examples available (asked for %d); raise molecules.max_raw for more",
                task, len(rows), name, n,
            )


def render(t: Task, cfg: DataConfig, splits: dict[str, Split], tokenizer) -> int:
    """Step 3: the train rows' SMILES variants (`data.smiles_variants`, SMILES-input tasks
    only), then every row's prompt and completion in `data.format`; returns the variants."""
    variants = cfg.smiles_variants if t.source_kind == "smiles" else 1
    if variants > 1:
        splits["train"].rows = with_smiles_variants(splits["train"].rows, variants)
    s = splits
    for r in s["train"].rows + s["val"].rows + s["test"].rows + s["real"].rows:
        r["prompt"] = render_prompt(cfg.format, t, r["source"], tokenizer)
        r["completion"] = render_completion(cfg.format, t, r["target"])
    return variants


def _label_counters(splits: dict[str, Split]) -> dict:
    """stats.json's labelling counters, summed over the splits."""
    timings = [s.timing for s in splits.values()]  # train, val, test, real
    label_seconds = sum(x["label_seconds"] for x in timings)
    kept_fresh = sum(x["labelled_kept"] for x in timings)
    return {
        "labelled": sum(x["labelled"] for x in timings),
        "from_cache": sum(x["cached"] for x in timings),
        "label_seconds": round(label_seconds, 2),
        "pairs_per_s": round(kept_fresh / label_seconds, 1) if label_seconds > 0 else None,
    }


def dataset_stats(task: str, cfg: DataConfig, version: str, splits: dict[str, Split], n_molecules: int, variants: int,
                  seconds: float) -> dict:
    """Step 4: stats.json: the settings, counts, drops by reason, lengths, labelling
    counters, timing and the hashes that identify the train, test, val and real sets."""
    train, val, test, real = (splits[k].rows for k in ("train", "val", "test", "real"))
    return {
        "task": task,
        "format": cfg.format,
        "label_version": version,
        "n_train_requested": cfg.n_train,
        "sample": cfg.sample,
        # the train set's size mix: what `data.sample` chose (a model learns this prior)
        "train_heavy_atoms": {str(k): v for k, v in sorted(Counter(r["heavy_atoms"] for r in train).items())},
        "n_test_requested": cfg.n_test,
        "smiles_variants": variants,
        "train_molecules": n_molecules,
        "train": len(train),
        "val": len(val),
        "test": len(test),
        "real": dict(sorted(Counter(r["band"] for r in real).items())),
        "dropped": {name: dict(sorted(s.dropped.items())) for name, s in splits.items()},
        "target_chars": _length_stats([len(r["target"]) for r in train + test]),
        "source_chars": _length_stats([len(r["source"]) for r in train + test]),
        **_label_counters(splits),
        "seconds": round(seconds, 2),
        "data_hash": rows_sha256([{k: r[k] for k in COLUMNS} for r in train]),
        "test_hash": rows_sha256([{k: r[k] for k in TEST_SET_FIELDS} for r in test]),
        "val_hash": rows_sha256([{k: r[k] for k in TEST_SET_FIELDS} for r in val]) if val else None,
        "real_hash": rows_sha256([{k: r[k] for k in (*TEST_SET_FIELDS, "band")} for r in real]) if real else None,
    }


def write_dataset(task: str, splits: dict[str, Split], stats: dict) -> None:
    """Step 5: data/datasets/<task>/ atomically: a parquet file per split, then stats.json."""
    with atomic_dir(paths.dataset_dir(task)) as out:
        for name, split in splits.items():
            cols = [*COLUMNS, "band"] if name == "real" else COLUMNS
            df = pd.DataFrame(split.rows, columns=cols).astype({"heavy_atoms": "int64"})
            df.to_parquet(out / f"{name}.parquet", index=False)
        write_json(out / "stats.json", stats)


def main(task: str, *, params: Path = DEFAULT_PARAMS, use_cache: bool = True) -> dict:
    """Run the stage for `task`; returns the stats written to stats.json.

    The steps: `label_splits`, `check_counts`, `render`, `dataset_stats`, `write_dataset`."""
    cfg: DataConfig = load_section("data", params)
    t = get_task(task)
    mols, mol_file = load_molecules()
    tokenizer = _load_tokenizer(cfg.format)
    labeller = get_task(getattr(t, "label_base", task))
    version = getattr(labeller, "label_version", "1")
    cache = LabelCache(paths.LABEL_CACHE / "labels.sqlite", labeller.name, version) if use_cache else None
    start = time.perf_counter()
    splits = label_splits(task, mols, t, cfg, cache)
    check_counts(task, splits, cfg, len(mols), mol_file)
    n_molecules = len(splits["train"].rows)
    variants = render(t, cfg, splits, tokenizer)
    seconds = time.perf_counter() - start
    stats = dataset_stats(task, cfg, version, splits, n_molecules, variants, seconds)
    write_dataset(task, splits, stats)
    log.info(
        "%s: %d train + %d val + %d test examples + %d real molecules (%s format), dropped %s, %.1fs",
        task, *(len(splits[k].rows) for k in ("train", "val", "test", "real")), cfg.format, stats["dropped"], seconds,
    )
    return stats
