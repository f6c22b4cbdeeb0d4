"""The contract every task plug-in fulfils.

    python -m pytest tests/test_tasks.py

Sources and targets are plain strings. Molecules reach `label()` already standardised
(canonical isomeric SMILES from `seqtune.pipeline.molecules`); a task may still refuse some (for
example metals for IUPAC naming) by returning a `Labelled` with a `reason`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass(frozen=True)
class Labelled:
    """One molecule's example, or why it has none."""

    source: str | None = None
    """Model input (a SMILES string or a name)."""
    target: str | None = None
    """Expected model output."""
    reason: str | None = None
    """Why the molecule was dropped (None when kept); counted in the data stats."""

    @property
    def kept(self) -> bool:
        return self.reason is None


class Task(ABC):
    name: ClassVar[str]
    source_kind: ClassVar[Literal["smiles", "name"]]
    target_kind: ClassVar[Literal["smiles", "name", "formula"]]
    instruction: ClassVar[str]
    """One sentence telling the model what to do (used by the instruction and chat formats)."""
    primary_metric: ClassVar[str]
    """Key of `score()`'s dict that decides the champion (higher is better)."""
    graded_metric: ClassVar[str | None] = None
    """Key of a partial-credit metric that moves before the primary one does (small models and
    small data rarely get an answer exactly right); reports plot it beside the primary."""
    verified_decoding: ClassVar[bool] = False
    """Whether `verified` decoding is fair for this task: `verify()` checks an answer without
    producing one (OPSIN parses a name back; it does not write names). Where checking needs
    the rule-based answer itself (RDKit's formula, OPSIN's structure of the input name),
    keeping the beam that checks out would be the rule-based tool answering, not the model:
    such tasks decode greedy whatever `decoding: verified` asks (`decoding_for`)."""
    uses_opsin: ClassVar[bool] = False
    """Whether `verify` parses names with OPSIN (a server warms its long-lived OPSIN at start)."""

    @abstractmethod
    def label(self, smiles: Sequence[str], *, workers: int = 1) -> list[Labelled]:
        """Label standardised molecules: one `Labelled` per input, same order."""

    @abstractmethod
    def score_batch(self, predictions: Sequence[str], examples: Sequence[Mapping]) -> list[dict[str, float]]:
        """Per-item metrics (each in [0, 1] unless named `*_len`) for predictions of examples.

        `examples[i]` has at least `source`, `target` and `smiles` (the input molecule)."""

    def score(self, prediction: str, example: Mapping) -> dict[str, float]:
        return self.score_batch([prediction], [example])[0]

    def baseline(self, sources: Sequence[str]) -> list[str | None] | None:
        """Rule-based predictions for `sources`, or None when the task has no such tool."""
        return None

    def validate_source(self, source: str) -> str | None:
        """Why `source` is not a valid input (a message for the user), or None when valid."""
        return None

    def verify(self, sources: Sequence[str], outputs: Sequence[str]) -> list[bool] | None:
        """Whether each output is provably right for its source (e.g. OPSIN round-trip),
        or None when the task cannot check."""
        return None

    def decoding_for(self, requested: str) -> str:
        """The decoding that runs when `requested` is asked for: `verified` only where it is
        fair (`verified_decoding`), else greedy."""
        return "greedy" if requested == "verified" and not self.verified_decoding else requested

    def __repr__(self) -> str:
        return f"<task {self.name}: {self.source_kind} -> {self.target_kind}>"
