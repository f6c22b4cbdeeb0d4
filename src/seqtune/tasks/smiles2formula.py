"""Task `smiles2formula`: SMILES in, Hill-order molecular formula out (RDKit CalcMolFormula).

    seqtune data smiles2formula

A deterministic task with an exact answer: a quick sanity check that fine-tuning works, and
a rule-based baseline that is always right (RDKit itself).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import ClassVar

from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from seqtune.chem import canonical_smiles, char_similarity, mol_from_smiles, smiles_problem
from seqtune.tasks.base import Labelled, Task

_FORMULA = re.compile(r"(?:[A-Z][a-z]?\d*)+(?:[+-]\d*)?")
_ELEMENT = re.compile(r"([A-Z][a-z]?)(\d*)")
_CHARGE = re.compile(r"([+-])(\d*)$")


def formula(smiles: str) -> str | None:
    mol = mol_from_smiles(smiles)
    return CalcMolFormula(mol) if mol is not None else None


def element_counts(text: str) -> Counter[str] | None:
    """{element: count} of a formula string (a net charge counts as element "+"/"-"),
    or None when `text` is not a formula."""
    if not _FORMULA.fullmatch(text):
        return None
    counts: Counter[str] = Counter()
    for sym, n in _ELEMENT.findall(text):
        counts[sym] += int(n or 1)
    if charge := _CHARGE.search(text):
        counts[charge.group(1)] = int(charge.group(2) or 1)
    return counts


def element_accuracy(prediction: str, target: str) -> float:
    """Share of the elements in either formula whose count the prediction gets right: a
    graded signal while exact formulas are still rare (C9H16O4 for C9H16O3 scores 2/3)."""
    pred, true = element_counts(prediction), element_counts(target)
    if pred is None or true is None:
        return 0.0
    elements = set(pred) | set(true)
    return sum(pred[e] == true[e] for e in elements) / len(elements)


class Smiles2Formula(Task):
    name: ClassVar[str] = "smiles2formula"
    source_kind = "smiles"
    target_kind = "formula"
    instruction: ClassVar[str] = "Give the molecular formula of the molecule with this SMILES."
    primary_metric: ClassVar[str] = "exact_match"
    graded_metric: ClassVar[str | None] = "element_accuracy"

    @property
    def label_version(self) -> str:
        from rdkit import rdBase

        return f"rdkit-{rdBase.rdkitVersion}"

    def label(self, smiles: Sequence[str], *, workers: int = 1) -> list[Labelled]:
        # Microseconds per molecule: no process pool needed.
        out = []
        for s in smiles:
            canon = canonical_smiles(s)
            f = formula(canon) if canon else None
            out.append(Labelled(source=canon, target=f) if f else Labelled(reason="invalid_smiles"))
        return out

    def score_batch(self, predictions: Sequence[str], examples: Sequence[Mapping]) -> list[dict[str, float]]:
        rows = []
        for pred, ex in zip(predictions, examples):
            p = pred.strip() if isinstance(pred, str) else ""
            rows.append(
                {
                    "exact_match": float(p == ex["target"]),
                    "element_accuracy": element_accuracy(p, ex["target"]),
                    "char_similarity": char_similarity(p, ex["target"]),
                    "output_len": float(len(p)),
                }
            )
        return rows

    def baseline(self, sources: Sequence[str]) -> list[str | None]:
        return [formula(s) for s in sources]

    def validate_source(self, source: str) -> str | None:
        return smiles_problem(source)

    def verify(self, sources: Sequence[str], outputs: Sequence[str]) -> list[bool]:
        return [
            isinstance(o, str) and (f := formula(s)) is not None and o.strip() == f for s, o in zip(sources, outputs)
        ]
