"""Batched generation with a model + tokenizer + the task and format it was trained for: the one
decoding code that evaluation, the in-training evaluation, the MLflow model, the BentoML
service and `seqtune predict` all run.

    python -c "from seqtune.inference.loader import load_generator; print(load_generator('data/models/smiles2formula').predict(['CCO']))"

Real generation, never teacher forcing: prompts are left-padded, decoded with the KV cache,
greedy by default, beam search or OPSIN-verified beams on request. Inputs are sorted by
length before batching so a batch pads to similar lengths, and results return in input order.
`verified` runs only where the task's check does not itself answer (`Task.decoding_for`):
`predict` applies that rule, so every caller gets it, the MLflow model included.

A model folder is opened by `seqtune.inference.loader.load_generator`; the constructor takes a
model already in memory (the one being trained, a copy a bench script compares).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from seqtune.inference.devices import precision_reason, resolve_precision, weights_dtype
from seqtune.inference.formats import parse_completion, render_prompt
from seqtune.inference.heads import greedy_token, install_answer_head
from seqtune.tasks import get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    output: str
    verified: bool | None = None
    """True when the task proved the output right for the input (smiles2iupac: OPSIN
    round-trip); None when the task cannot check or checking was not asked for."""


class Generator:
    """A model + tokenizer + the task and format it was trained for."""

    def __init__(self, model, tokenizer, *, task: str, fmt: str, max_new_tokens: int = 96, batch_size: int = 32,
                 drop_finished: bool = True, precision: str = "auto", answer_ids: Sequence[int] | None = None):
        # The Generator takes the model over: its weights are cast in place to the resolved
        # precision (resolve_precision) and, given `answer_ids`, its LM head is replaced by an
        # AnswerHead over them (install_answer_head): give it a model nothing else uses then.
        self.precision = resolve_precision(precision, model.device)
        self.precision_reason = precision_reason(precision, self.precision, model.device)
        """Why it runs in `self.precision` (the verdict behind auto): evaluation and the service record it."""
        self.model = model.to(weights_dtype(self.precision, model.device)).eval()
        self.answer_vocab: int | None = None
        """How many tokens the LM head computes when it is an AnswerHead; None: the full vocabulary."""
        if answer_ids is not None and install_answer_head(self.model, answer_ids):
            self.answer_vocab = len(self.model.get_output_embeddings().ids)
        # Greedy decoding by `_greedy` (rows leave the batch at EOS) instead of `model.generate`.
        self.drop_finished = drop_finished
        self.tokenizer = tokenizer
        self.task = get_task(task)
        self.format = fmt
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        # Decoder-only generation must be left-padded so every prompt ends where output begins.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def prompts(self, sources: Sequence[str]) -> list[str]:
        return [render_prompt(self.format, self.task, s, self.tokenizer) for s in sources]

    @torch.inference_mode()
    def generate(self, sources: Sequence[str], *, num_beams: int = 1, num_return_sequences: int = 1,
                 progress: str | None = None) -> list[list[str]]:
        """`num_return_sequences` decoded outputs per source, best first, in input order.
        `progress`: a progress bar of that name, one step per batch (evaluation's minutes)."""
        if not sources:
            return []
        prompts = self.prompts(sources)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[str]] = [[] for _ in prompts]
        device = self.model.device
        # `autocast`: fp32 weights, bf16 matmuls (the cast of every weight each call is what
        # makes it slower than bf16 weights at small batches).
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if self.precision == "autocast"
                    else nullcontext())
        starts = range(0, len(order), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=progress, unit="batch")
        for start in starts:
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            if self.drop_finished and num_beams == 1 and num_return_sequences == 1:
                with autocast:
                    rows = self._greedy(enc["input_ids"], enc["attention_mask"])
                texts = [parse_completion(self.format, self.task, t)
                         for t in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]
                for j, i in enumerate(idx):
                    out[i] = [texts[j]]
                continue
            with autocast:
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    num_beams=num_beams,
                    num_return_sequences=num_return_sequences,
                    use_cache=True,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            texts = [
                parse_completion(self.format, self.task, t)
                for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)
            ]
            for j, i in enumerate(idx):
                out[i] = texts[j * num_return_sequences : (j + 1) * num_return_sequences]
        return out

    def _greedy(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
        """Greedy decoding of a left-padded batch in which a row leaves the batch (and its KV
        cache rows are dropped) as soon as it emits EOS. `model.generate` keeps finished rows
        computing until the longest one ends; with outputs of varied length that is most of
        the decode work. Same model calls otherwise: position ids from the attention mask,
        logits only for the last position."""
        from transformers import DynamicCache

        eos = self.tokenizer.eos_token_id
        n = input_ids.shape[0]
        tokens: list[list[int]] = [[] for _ in range(n)]
        alive = torch.arange(n, device=input_ids.device)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                            past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        last_pos = positions[:, -1]
        head = self.model.get_output_embeddings()
        for step in range(self.max_new_tokens):
            nxt = greedy_token(head, logits[:, -1, :])
            done = nxt == eos
            for row, tok in zip(alive.tolist(), nxt.tolist()):
                if tok != eos:
                    tokens[row].append(tok)
            if step == self.max_new_tokens - 1:
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(-1)
                if keep.numel() == 0:
                    break
                cache.batch_select_indices(keep)
                alive, nxt, attention_mask, last_pos = alive[keep], nxt[keep], attention_mask[keep], last_pos[keep]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
            last_pos = last_pos + 1
            logits = self.model(input_ids=nxt[:, None], attention_mask=attention_mask, position_ids=last_pos[:, None],
                                past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        return tokens

    def predict(self, sources: Sequence[str], *, decoding: str = "greedy", num_beams: int = 4,
                progress: str | None = None) -> list[Prediction]:
        """One prediction per source. `verified` decoding keeps the first of `num_beams`
        beams the task can verify, else the top beam; asked of a task whose check is the
        rule-based answer itself (`Task.verified_decoding` false) it decodes greedy, as
        `Task.decoding_for` says, whoever asks. `progress`: as for `generate`."""
        decoding = self.task.decoding_for(decoding)
        if decoding == "greedy":
            outs = [c[0] for c in self.generate(sources, progress=progress)]
        elif decoding == "beam":
            outs = [c[0] for c in self.generate(sources, num_beams=num_beams, progress=progress)]
        elif decoding == "verified":
            cands = self.generate(sources, num_beams=num_beams, num_return_sequences=num_beams, progress=progress)
            flat_src = [s for s, c in zip(sources, cands) for _ in c]
            flat_out = [o for c in cands for o in c]
            try:
                ok = self.task.verify(flat_src, flat_out)
            except Exception as e:  # noqa: BLE001 - no proof (OPSIN down, no Java) is no reason to lose the answers
                # The beams are already searched: answer with each top beam, `verified` unknown,
                # as greedy does, instead of failing the batch (whose item-by-item retry would
                # search every item's beams again and fail the same way).
                log.warning("%s: verification failed (%s); answering with the top beams, verified unknown",
                            self.task.name, e)
                ok = None
            if ok is None:
                return [Prediction(c[0]) for c in cands]
            preds, k = [], 0
            for c in cands:
                flags = ok[k : k + len(c)]
                k += len(c)
                hit = next((o for o, f in zip(c, flags) if f), None)
                preds.append(Prediction(hit, True) if hit is not None else Prediction(c[0], False))
            return preds
        else:
            raise ValueError(f"unknown decoding {decoding!r}; choose greedy, beam or verified")
        return [Prediction(o) for o in outs]
