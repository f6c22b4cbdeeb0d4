"""Batched generation from a fine-tuned model folder: the one code path that evaluation,
the MLflow model, the BentoML service and `seqtune predict` all use.

    python -c "from seqtune.pipeline.generation import Generator; print(Generator.load('data/models/smiles2formula').predict(['CCO']))"

Real generation, never teacher forcing: prompts are left-padded, decoded with the KV cache,
greedy by default, beam search or OPSIN-verified beams on request. Inputs are sorted by
length before batching so a batch pads to similar lengths, and results return in input order.

A model folder that records the tokens its training answers used (`answer_token_ids` in
seqtune.json) decodes with an LM head over those rows only (`AnswerHead`, on by default:
`evaluate.answer_vocab`, `serve.answer_vocab`): SmolLM2's head is 49,152 x 576, ~21% of the bytes
each decode step reads, and a smiles2iupac specialist answers with ~400 distinct tokens.
Outputs are then limited to those tokens, which a trained specialist's greedy choice
practically always is (`bench/decode_paths.py`, `bench/generation_speed.py` count the
outputs that change).
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from seqtune.pipeline.formats import parse_completion, render_prompt
from seqtune.pipeline.precision import bf16_verdict
from seqtune.tasks import get_task

log = logging.getLogger(__name__)

MODEL_CARD = "seqtune.json"
"""File in every fine-tuned model folder recording task, format and base model."""


def pick_device() -> torch.device:
    """CUDA > MPS > CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively on `device`, by fact (`seqtune.pipeline.precision`): CUDA
    Ampere+; a CPU whose flags name avx512_bf16/amx_bf16 and whose bf16 matmul measured faster
    than fp32 (once per machine, cached); never MPS.

    Emulated bf16 is never a speedup: on an AVX512 Xeon without avx512_bf16 a
    (1024x576)@(576x1536) matmul ran 56 GFLOP/s in bf16 vs 229 in fp32 (4x slower), on an
    AVX2-only EPYC 1,119 ms vs 24.6 ms (45x; `bench/cpu_bf16.py`). oneDNN's own answer
    (`_is_mkldnn_bf16_supported`) is True on the Xeon, so it is not asked."""
    return bf16_verdict(device).native


PRECISIONS = ("auto", "bf16", "autocast", "fp32")


def resolve_precision(precision: str, device: torch.device) -> str:
    """What `precision` (evaluate/serve.precision) means on `device`: bf16, autocast or fp32.

    auto: bf16 weights where bf16 is native, else fp32. bf16 weights halve the bytes each
    decode step reads: a single request of make run's smiles2iupac champion took p50 0.71-0.78 s
    in bf16 vs 1.04-1.38 s under bf16 autocast (fp32 weights cast per call) and ~1.3 s in fp32,
    and batched greedy ran 15.3 vs 8.5-10.8 items/s, structure match 0.205 vs 0.210 on the same
    200 items (`bench/request_latency.py`, 2-core AVX512-BF16 EPYC). `autocast` is how
    evaluations before 2026-12-06 ran; asking for bf16 where it is emulated is an error."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision in ("bf16", "autocast") and not native:
        raise ValueError(f"precision {precision}: {device.type} has no native bf16 ({bf16_verdict(device).reason}): "
                         "use auto or fp32")
    return precision


def precision_reason(asked: str, resolved: str, device: torch.device) -> str:
    """Why `asked` (a params.yaml precision) ran as `resolved` on `device`: what MLflow tags
    and the service's /metadata record beside the precision."""
    if asked == "fp32":
        return "fp32 asked"  # no verdict needed: nothing is measured for it
    return f"{asked} -> {resolved}: {bf16_verdict(device).reason}"


def weights_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype to hold the weights in for `precision` on `device` (bf16 only for bf16;
    autocast keeps fp32 weights)."""
    return torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32


def read_model_card(model_dir: Path | str) -> dict:
    path = Path(model_dir) / MODEL_CARD
    if not path.exists():
        raise FileNotFoundError(
            f"{model_dir} is not a seqtune model folder (no {MODEL_CARD}); "
            "train one with `seqtune train TASK` or `dvc repro`"
        )
    return json.loads(path.read_text())


class AnswerHead(torch.nn.Module):
    """An LM head that computes logits only for `ids` (the tokens a model was trained to
    answer with) and gives every other token -inf: argmax, beam search and softmax then choose
    among `ids` exactly as the full head restricted to them would, for ~len(ids)/vocab of the
    head's matmul. The rows are a copy (the full head is often tied to the input embedding)."""

    def __init__(self, full: torch.nn.Linear, ids: Sequence[int]):
        super().__init__()
        self.vocab_size = full.out_features
        self.register_buffer("ids", torch.as_tensor(list(ids), dtype=torch.long, device=full.weight.device))
        # Named `rows`, not `weight`: nothing that ties or resizes embeddings may mistake it for the head.
        self.register_buffer("rows", full.weight.detach()[self.ids].clone())
        self.register_buffer("bias", None if full.bias is None else full.bias.detach()[self.ids].clone())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        sub = torch.nn.functional.linear(hidden, self.rows, self.bias)
        out = sub.new_full((*sub.shape[:-1], self.vocab_size), float("-inf"))
        return out.index_copy_(-1, self.ids, sub)


def install_answer_head(model, ids: Sequence[int]) -> bool:
    """Replace `model`'s LM head by an `AnswerHead` over `ids`, after checking on a probe input
    that the model's logits really come from that head (the trimmed logits match the full
    ones on `ids`, every other token is below them). Returns False, leaving the full head,
    where they do not (an architecture whose forward bypasses its output embeddings)."""
    full = model.get_output_embeddings()
    ids = sorted(set(int(i) for i in ids))
    if not isinstance(full, torch.nn.Linear) or not ids or ids[0] < 0 or ids[-1] >= full.out_features:
        log.warning("answer vocabulary not used: the model's LM head is %s, ids span %s..%s",
                    type(full).__name__, ids[:1], ids[-1:])
        return False
    probe = torch.tensor([[ids[0], ids[len(ids) // 2], ids[-1]]], device=model.device)
    with torch.inference_mode():
        ref = model(input_ids=probe).logits[0].float()
        model.set_output_embeddings(AnswerHead(full, ids))
        got = model(input_ids=probe).logits[0].float()
    keep = torch.zeros(ref.shape[-1], dtype=torch.bool, device=ref.device)
    keep[ids] = True
    # bf16 matmuls of a row subset may round differently from the full one: a loose tolerance
    # still catches a head that was bypassed (finite logits outside `ids`) or misindexed.
    ok = torch.allclose(got[:, keep], ref[:, keep], rtol=0.05, atol=0.05)
    if (~keep).any():
        ok = ok and bool((got[:, ~keep].amax(-1) < got[:, keep].amin(-1)).all())
    if not ok:
        model.set_output_embeddings(full)
        log.warning("answer vocabulary not used: %s's logits do not come from its output embeddings alone",
                    type(model).__name__)
    return ok


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

    @classmethod
    def load(cls, model_dir: Path | str, *, device: torch.device | str | None = None, precision: str = "auto",
             answer_vocab: bool = True, **kw) -> Generator:
        """`answer_vocab`: decode with the LM head over the tokens the model's training answers
        used, where its seqtune.json records them (models trained before 2026-12-06 do not:
        they decode with the full head)."""
        from transformers import AutoTokenizer

        from seqtune.pipeline.model_files import load_causal_lm

        card = read_model_card(model_dir)
        device = torch.device(device) if device else pick_device()
        # Loaded in the final dtype: no transient fp32 copy of a model served in bf16.
        model = load_causal_lm(model_dir, dtype=weights_dtype(precision, device)).to(device)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        answer_ids = card.get("answer_token_ids") if answer_vocab else None
        return cls(model, tokenizer, task=card["task"], fmt=card["format"], precision=precision,
                   answer_ids=answer_ids, **kw)

    def prompts(self, sources: Sequence[str]) -> list[str]:
        return [render_prompt(self.format, self.task, s, self.tokenizer) for s in sources]

    @torch.inference_mode()
    def generate(self, sources: Sequence[str], *, num_beams: int = 1, num_return_sequences: int = 1) -> list[list[str]]:
        """`num_return_sequences` decoded outputs per source, best first, in input order."""
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
        for start in range(0, len(order), self.batch_size):
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
            if isinstance(head, AnswerHead):
                # argmax over the answer tokens only (the rest are -inf): ~1.4 ms less per step at
                # batch 32 than over 49,152 columns; ids are sorted, so ties break as the full argmax.
                nxt = head.ids[logits[:, -1, head.ids].argmax(-1)]
            else:
                nxt = logits[:, -1, :].argmax(-1)
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

    def predict(self, sources: Sequence[str], *, decoding: str = "greedy", num_beams: int = 4) -> list[Prediction]:
        """One prediction per source. `verified` decoding keeps the first of `num_beams`
        beams the task can verify, else the top beam."""
        if decoding == "greedy":
            outs = [c[0] for c in self.generate(sources)]
        elif decoding == "beam":
            outs = [c[0] for c in self.generate(sources, num_beams=num_beams)]
        elif decoding == "verified":
            cands = self.generate(sources, num_beams=num_beams, num_return_sequences=num_beams)
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

