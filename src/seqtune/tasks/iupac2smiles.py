"""Task `iupac2smiles`: an IUPAC name in, the molecule's SMILES out (the reverse of
smiles2iupac's verified pairs).

    seqtune data iupac2smiles

Sources are names that OPSIN has already proven to describe the molecule; targets are RDKit
canonical isomeric SMILES. A prediction is right when it parses to the same canonical
structure, however it is written. OPSIN itself is the rule-based baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from seqtune.chem import canonical_smiles, char_similarity, opsin_canonical, tanimoto
from seqtune.tasks.base import Labelled, Task
from seqtune.tasks.smiles2iupac import label_verified_names


class Iupac2Smiles(Task):
    name: ClassVar[str] = "iupac2smiles"
    source_kind = "name"
    target_kind = "smiles"
    instruction: ClassVar[str] = "Give the SMILES of the molecule with this IUPAC name."
    primary_metric: ClassVar[str] = "exact_match"
    graded_metric: ClassVar[str | None] = "tanimoto"
    uses_opsin: ClassVar[bool] = True
    max_name_chars: ClassVar[int] = 2000
    """Sanity bound, not a knob: the longest verified names are a few hundred characters;
    the service applies its own, tighter `serve.max_input_length`."""

    @property
    def label_version(self) -> str:
        from seqtune.tasks import get_task

        return get_task("smiles2iupac").label_version  # type: ignore[attr-defined]

    label_base: ClassVar[str] = "smiles2iupac"
    """Labels are derived from this task's (see `from_base`): the data stage reuses its
    cached labels instead of naming every molecule twice."""

    @staticmethod
    def from_base(lab: Labelled) -> Labelled:
        """A verified (SMILES -> name) pair turned around; drops keep their reason."""
        return Labelled(source=lab.target, target=lab.source) if lab.kept else lab

    def label(self, smiles: Sequence[str], *, workers: int = 1) -> list[Labelled]:
        return [self.from_base(lab) for lab in label_verified_names(smiles, workers=workers)]

    def score_batch(self, predictions: Sequence[str], examples: Sequence[Mapping]) -> list[dict[str, float]]:
        rows = []
        for pred, ex in zip(predictions, examples):
            p = pred.strip() if isinstance(pred, str) else ""
            got = canonical_smiles(p)
            ref = canonical_smiles(ex["target"]) or canonical_smiles(ex["smiles"])
            rows.append(
                {
                    "exact_match": float(got is not None and got == ref),
                    "validity": float(got is not None),
                    "tanimoto": tanimoto(got, ref) if got is not None else 0.0,
                    "char_similarity": char_similarity(p, ex["target"]),
                    "output_len": float(len(p)),
                }
            )
        return rows

    def baseline(self, sources: Sequence[str]) -> list[str | None]:
        return opsin_canonical(list(sources))

    def validate_source(self, source: str) -> str | None:
        if not isinstance(source, str) or not source.strip():
            return "empty input: expected an IUPAC name such as 'ethanol'"
        if len(source) > self.max_name_chars:
            return f"name too long ({len(source)} characters; at most {self.max_name_chars})"
        if "\n" in source or "\r" in source:
            return "a name must be a single line"
        return None

    def verify(self, sources: Sequence[str], outputs: Sequence[str]) -> list[bool]:
        refs = opsin_canonical(list(sources))
        return [
            ref is not None and isinstance(o, str) and canonical_smiles(o.strip()) == ref
            for o, ref in zip(outputs, refs)
        ]
