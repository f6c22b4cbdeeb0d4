"""Supervised fine-tuning data: prompt/completion pairs -> token ids with the prompt masked.

    python -c "from seqtune.pipeline.sft_data import encode; from seqtune.pipeline.tiny_model import build_tiny_tokenizer as t; print(encode(t(), 'CCO =>', ' C2H6O'))"

Used by `seqtune.pipeline.train`. The prompt and the completion are tokenized separately, the prompt
exactly as generation tokenizes it (`tokenizer(prompt)`, special tokens included, so a
model that needs BOS gets it), the completion without special tokens and followed by the
tokenizer's EOS. Labels mask the prompt by its token count, never by searching for a
response-template string, and the EOS label is kept so the model learns to stop.
Examples longer than `max_length` are dropped and counted, never truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

IGNORE_INDEX = -100
"""Label value that the loss ignores (PyTorch cross-entropy's default)."""


def encode(tokenizer, prompt: str, completion: str) -> dict[str, list[int]]:
    """Token ids and labels of one example (prompt labels masked, EOS label kept)."""
    return encode_batch(tokenizer, [prompt], [completion])[0]


def encode_batch(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> list[dict[str, list[int]]]:
    """`encode` for many examples at once (the fast tokenizer batches)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: completions could never end")
    if len(prompts) == 0:
        return []
    p_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    out = []
    for p, c in zip(p_ids, c_ids):
        c = [*c, tokenizer.eos_token_id]
        out.append({"input_ids": [*p, *c], "labels": [IGNORE_INDEX] * len(p) + c, "length": len(p) + len(c)})
    return out


@dataclass(frozen=True)
class Encoded:
    rows: list[dict[str, Any]]
    """`input_ids`, `labels`, `length` per kept example, in input order."""
    dropped: int
    """Examples longer than max_length (left out, not truncated)."""
    max_completion_tokens: int
    """Longest completion including EOS: how many tokens generation needs at most."""


def encode_examples(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int) -> Encoded:
    rows = encode_batch(tokenizer, prompts, completions)
    kept = [r for r in rows if r["length"] <= max_length]
    longest = max((sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in kept), default=0)
    return Encoded(kept, len(rows) - len(kept), longest)


@dataclass
class Collator:
    """Right-pads a batch: pad ids, attention mask 0 and label IGNORE_INDEX on padding.

    Padding is explicit (not the tokenizer's `padding_side`, which generation sets to left):
    training must right-pad so every example keeps positions 0..n-1."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        n = max(len(f["input_ids"]) for f in features)
        batch = len(features)
        input_ids = torch.full((batch, n), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, n), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((batch, n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[i, :k] = torch.as_tensor(f["input_ids"])
            labels[i, :k] = torch.as_tensor(f["labels"])
            attention[i, :k] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from (seed, epoch) instead of the global RNG.

    The stock sampler draws from the global RNG, whose state at the start of a later epoch is
    not restored on resume; seeding per epoch makes a resumed run see the same batches."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        # SeedSequence mixes (seed, epoch) so distinct pairs never collide (seed+epoch would).
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))


def answer_token_ids(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Sorted ids of every token the loss trained the model to emit (labels that are not
    IGNORE_INDEX: completion tokens and EOS). Stored with the model (`seqtune.json`) so
    generation can compute the LM head for these rows only (`inference.heads.AnswerHead`)."""
    return sorted({t for r in rows for t in r["labels"] if t != IGNORE_INDEX})


def padding_ratio(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> float:
    """Share of padded positions when `lengths` are batched in `order` (0 = no waste)."""
    real = padded = 0
    for start in range(0, len(order), batch_size):
        chunk = [lengths[i] for i in order[start : start + batch_size]]
        real += sum(chunk)
        padded += max(chunk) * len(chunk)
    return 1 - real / padded if padded else 0.0
