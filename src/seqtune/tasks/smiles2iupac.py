"""Task `smiles2iupac`: SMILES in, a verified IUPAC name out.

    seqtune data smiles2iupac

Targets come from openclatura (rule-based) and are kept only when OPSIN parses the name back
to the same RDKit canonical isomeric SMILES as the input — InChIKey equality alone is too
lenient (it ignores some stereo and tautomer differences). The headline metric is
*structure match*: IUPAC naming has many valid conventions, so a prediction counts when it
names the right structure, whatever its spelling.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import ClassVar, NamedTuple

from seqtune.tasks.base import Labelled, Task
from seqtune.chem import (
    canonical_smiles,
    char_similarity,
    exclusion_reason,
    mol_from_smiles,
    opsin_canonical,
    smiles_problem,
    tanimoto,
)

log = logging.getLogger(__name__)


def name_smiles(smiles: Sequence[str], *, workers: int = 1) -> list[str | None]:
    """openclatura names (None where naming failed), in parallel over `workers` processes."""
    import openclatura

    if not smiles:
        return []
    # A process pool only pays off beyond a handful of molecules.
    processes = workers if workers > 1 and len(smiles) >= 4 * workers else 1
    results = openclatura.name_many(list(smiles), processes=processes, verify_opsin=False)
    return [r.name if r.ok else None for r in results]


class _Named(NamedTuple):
    """A chunk after naming, before OPSIN verification."""

    out: list[Labelled | None]
    canon: list[str | None]
    named: list[tuple[int, str]]


def _name_chunk(smiles: Sequence[str], workers: int) -> _Named:
    out: list[Labelled | None] = [None] * len(smiles)
    canon: list[str | None] = [None] * len(smiles)
    todo: list[int] = []
    for i, s in enumerate(smiles):
        mol = mol_from_smiles(s)
        if mol is None:
            out[i] = Labelled(reason="invalid_smiles")
            continue
        reason = exclusion_reason(mol)
        if reason:
            out[i] = Labelled(reason=reason)
            continue
        canon[i] = canonical_smiles(s)
        todo.append(i)
    names = name_smiles([canon[i] for i in todo], workers=workers)  # type: ignore[misc]
    for i, n in zip(todo, names):
        if not n:
            out[i] = Labelled(reason="naming_failed")
    return _Named(out, canon, [(i, n) for i, n in zip(todo, names) if n])


def _verify_chunk(chunk: _Named) -> list[Labelled]:
    """ONE OPSIN call for the whole chunk; keep a name only when it parses back to the exact
    canonical isomeric SMILES of the input."""
    out = chunk.out
    parsed = opsin_canonical([n for _, n in chunk.named])
    for (i, n), back in zip(chunk.named, parsed):
        if back is None:
            out[i] = Labelled(reason="opsin_unparsable")
        elif back != chunk.canon[i]:
            out[i] = Labelled(reason="opsin_mismatch")
        else:
            out[i] = Labelled(source=chunk.canon[i], target=n)
    return out  # type: ignore[return-value]


def label_verified_names(smiles: Sequence[str], *, workers: int = 1) -> list[Labelled]:
    """(canonical SMILES, verified name) per molecule, or the reason it has none."""
    return _verify_chunk(_name_chunk(smiles, workers))


def label_verified_async(smiles: Sequence[str], *, workers: int, executor: Executor) -> Future[list[Labelled]]:
    """Name `smiles` now (all worker processes), then verify them with OPSIN on `executor`.

    OPSIN is a JVM in a subprocess, so a thread can wait on it while the caller names the
    next chunk: naming and verification overlap and both cores stay busy."""
    return executor.submit(_verify_chunk, _name_chunk(smiles, workers))


class Smiles2Iupac(Task):
    name: ClassVar[str] = "smiles2iupac"
    source_kind = "smiles"
    target_kind = "name"
    instruction: ClassVar[str] = "Give the IUPAC name of the molecule with this SMILES."
    primary_metric: ClassVar[str] = "structure_match"
    graded_metric: ClassVar[str | None] = "tanimoto"
    # OPSIN (a parser) checks a name; openclatura (a namer) makes the labels: independent tools.
    verified_decoding: ClassVar[bool] = True
    uses_opsin: ClassVar[bool] = True

    @property
    def label_version(self) -> str:
        """Changes whenever the labeller could give different labels (label cache key)."""
        import openclatura

        return f"openclatura-{openclatura.__version__}+opsin-2.9.0"

    def label(self, smiles: Sequence[str], *, workers: int = 1) -> list[Labelled]:
        return label_verified_names(smiles, workers=workers)

    def label_async(self, smiles: Sequence[str], *, workers: int, executor: Executor) -> Future[list[Labelled]]:
        """`label`, with the OPSIN step left running on `executor` (the data stage overlaps it
        with naming the next chunk)."""
        return label_verified_async(smiles, workers=workers, executor=executor)

    def score_batch(self, predictions: Sequence[str], examples: Sequence[Mapping]) -> list[dict[str, float]]:
        preds = [p if isinstance(p, str) else "" for p in predictions]
        parsed = opsin_canonical([p.strip() for p in preds])  # one JVM for the whole batch
        rows = []
        for pred, back, ex in zip(preds, parsed, examples):
            ref = canonical_smiles(ex["smiles"])
            p = pred.strip()
            rows.append(
                {
                    "exact_match": float(p == ex["target"]),
                    "structure_match": float(back is not None and back == ref),
                    "parse_rate": float(back is not None),
                    "tanimoto": tanimoto(back, ref) if back is not None else 0.0,
                    "char_similarity": char_similarity(p, ex["target"]),
                    "output_len": float(len(p)),
                }
            )
        return rows

    def baseline(self, sources: Sequence[str]) -> list[str | None]:
        canon = [canonical_smiles(s) for s in sources]
        ok = [i for i, c in enumerate(canon) if c]
        names = name_smiles([canon[i] for i in ok], workers=1)
        out: list[str | None] = [None] * len(sources)
        for i, n in zip(ok, names):
            out[i] = n
        return out

    def validate_source(self, source: str) -> str | None:
        return smiles_problem(source)

    def verify(self, sources: Sequence[str], outputs: Sequence[str]) -> list[bool]:
        parsed = opsin_canonical([o.strip() if isinstance(o, str) else None for o in outputs])
        return [back is not None and back == canonical_smiles(s) for s, back in zip(sources, parsed)]
