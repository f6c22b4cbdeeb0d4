"""The CTranslate2 runtime (`serve.runtime: ctranslate2`): each champion converted into its
BentoML model at import, and a generator over the converted model with the interface the
service uses from the PyTorch `Generator`.

    seqtune bento import      # with serve.runtime: ctranslate2, converts each champion (serve.ct2_compute_type)

`convert` writes a CTranslate2 model folder from a seqtune model folder (loaded as the torch
path loads it: safetensors only, checked) quantized to `serve.ct2_compute_type`:
`float32` (SmolLM2-135M: 513 MiB; greedy outputs equal the torch fp32 generator's, tests and
a 6-prompt check of the real base model) or `int8_float32` (129 MiB; int8 weights, fp32
activations: the argmax moves where the model is unsure — all 6 of those untrained base-model
outputs changed; `bench/runtime_compare.py` measures what it does to a champion).

`CT2Generator` answers like `Generator`: the folder opened by the same loading steps
(`inference.loader.open_model_folder`: card, tokenizer, answer vocabulary), prompts rendered
by the same `formats` function with the model's own tokenizer, the same EOS id ends an answer
(not kept), at most `max_new_tokens` tokens, outputs decoded and parsed as the torch path
does. Verified decoding is `Generator.predict` itself (the function, not a copy, its
fair-decoding rule included) over this class's `generate`: CTranslate2 beam search
(`beam_size = num_hypotheses = num_beams`) then the first candidate the task verifies. Its
beams need not be the torch path's: transformers' and CTranslate2's beam searches stop and
rank finished hypotheses differently.

The answer vocabulary (`answer_token_ids` in seqtune.json, `serve.answer_vocab`) is applied
with `suppress_sequences`: every other token, one-token sequences, is suppressed at every
step, so the outputs are those of the torch path's `AnswerHead` (argmax among the answer
tokens). It buys no speed here: CTranslate2 still computes the full LM head and masks after
it. It is kept for the same answers in both runtimes; `serve.answer_vocab: false` drops it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from seqtune.config import ServeConfig
from seqtune.inference.formats import parse_completion, render_prompt
from seqtune.inference.generator import Generator
from seqtune.tasks import get_task

log = logging.getLogger(__name__)

COMPUTE_TYPES: tuple[str, ...] = get_args(ServeConfig.model_fields["ct2_compute_type"].annotation)
"""What `serve.ct2_compute_type` may name (int8_float32, float32): the CPU compute types a conversion is stored in."""


def _converter(model_dir: Path):
    """ctranslate2's TransformersConverter, loading the model as seqtune loads every model
    (`load_causal_lm`: safetensors only, complete, config matching), never a pickle."""
    from ctranslate2.converters import TransformersConverter

    from seqtune.inference.weights import load_causal_lm

    class SeqtuneConverter(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            model = load_causal_lm(model_name_or_path)
            if not isinstance(model, model_class):
                raise ValueError(f"{model_name_or_path} loads as {type(model).__name__}, not {model_class.__name__}")
            return model

    return SeqtuneConverter(str(model_dir))


def convert(model_dir: Path | str, out_dir: Path | str, compute_type: str) -> Path:
    """Write `model_dir` (a seqtune model folder) as a CTranslate2 model in `out_dir`, its
    weights stored in `compute_type`. Raises ValueError naming the fix when CTranslate2
    cannot convert the architecture."""
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f"unknown compute type {compute_type!r}; choose one of {', '.join(COMPUTE_TYPES)}")
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        raise RuntimeError("serve.runtime ctranslate2 needs the ctranslate2 package: pip install ctranslate2 "
                           "(or serve.runtime: torch)") from None
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    try:
        _converter(model_dir).convert(str(out_dir), quantization=compute_type, force=True)
    except (ValueError, NotImplementedError) as e:
        raise ValueError(f"ctranslate2 cannot convert {model_dir}: {e}. Serve it with serve.runtime: torch") from e
    log.info("converted %s to ctranslate2 (%s) in %s", model_dir, compute_type, out_dir)
    return out_dir


def _vocabulary(ct2_dir: Path) -> list[str]:
    """The converted model's tokens by id (what its start tokens and suppressions are named by)."""
    if (ct2_dir / "vocabulary.json").is_file():
        return json.loads((ct2_dir / "vocabulary.json").read_text())
    return (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:-1]


class CT2Generator:
    """A converted model + the seqtune model folder's tokenizer, task and format."""

    runtime = "ctranslate2"

    def __init__(self, ct2_dir: Path | str, tokenizer, *, task: str, fmt: str, compute_type: str,
                 max_new_tokens: int = 96, batch_size: int = 32, answer_ids: Sequence[int] | None = None,
                 threads: int | None = None):
        import ctranslate2
        import torch

        ct2_dir = Path(ct2_dir)
        if not (ct2_dir / "model.bin").is_file():
            raise FileNotFoundError(f"{ct2_dir} holds no converted model (model.bin): run `seqtune bento import` "
                                    "with serve.runtime: ctranslate2")
        # The torch runtime's thread count (OMP_NUM_THREADS, else the physical cores): ctranslate2's
        # own default (intra_threads=0) may start more threads than a 2-core machine has.
        self.model = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=compute_type,
                                           intra_threads=threads or torch.get_num_threads())
        self.precision = self.model.compute_type
        """What it computes in (`compute_type`, or what ctranslate2 fell back to on this CPU)."""
        self.precision_reason = (f"serve.ct2_compute_type {compute_type} -> {self.precision} "
                                 f"(ctranslate2 {ctranslate2.__version__})")
        self.tokenizer = tokenizer
        self.task = get_task(task)
        self.format = fmt
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._vocab = _vocabulary(ct2_dir)
        if len(set(self._vocab)) != len(self._vocab):
            # Start tokens are passed by name: a name two ids share would read as one of them.
            log.warning("%s: the converted vocabulary names some tokens twice; prompts using them may differ "
                        "from the torch runtime's", ct2_dir)
        self.answer_vocab: int | None = None
        """How many tokens answers are limited to (None: the full vocabulary)."""
        self._suppress: list[list[str]] | None = None
        if answer_ids is not None:
            ids = sorted(set(int(i) for i in answer_ids))
            eos = tokenizer.eos_token_id
            if not ids or ids[0] < 0 or ids[-1] >= len(self._vocab) or eos not in ids:
                # As the torch path: a vocabulary that cannot be applied is a warning, not an outage.
                log.warning("answer vocabulary not used: ids span %s..%s of %d tokens, EOS %s",
                            ids[:1], ids[-1:], len(self._vocab), "in" if eos in ids else "missing")
            else:
                keep = set(ids)
                self._suppress = [[t] for i, t in enumerate(self._vocab) if i not in keep]
                self.answer_vocab = len(ids)

    @classmethod
    def load(cls, model_dir: Path | str, ct2_dir: Path | str, *, compute_type: str, answer_vocab: bool = True,
             **kw) -> CT2Generator:
        """`model_dir`: the seqtune model folder (tokenizer, seqtune.json) that `ct2_dir` was
        converted from, opened as the torch runtime's `load_generator` opens it."""
        from seqtune.inference.loader import open_model_folder

        folder = open_model_folder(model_dir, answer_vocab=answer_vocab)
        return cls(ct2_dir, folder.tokenizer, task=folder.card["task"], fmt=folder.card["format"],
                   compute_type=compute_type, answer_ids=folder.answer_ids, **kw)

    def prompts(self, sources: Sequence[str]) -> list[str]:
        return [render_prompt(self.format, self.task, s, self.tokenizer) for s in sources]

    def generate(self, sources: Sequence[str], *, num_beams: int = 1, num_return_sequences: int = 1,
                 progress: str | None = None) -> list[list[str]]:
        """`num_return_sequences` decoded outputs per source, best first, in input order.
        `progress` is accepted as `Generator.generate` takes it and shows nothing: ctranslate2
        batches inside one call."""
        if not sources:
            return []
        # Token ids exactly as the torch path encodes them (special tokens included), named by
        # the converted model's vocabulary; ctranslate2 sorts by length and batches itself.
        ids = self.tokenizer(self.prompts(sources))["input_ids"]
        results = self.model.generate_batch(
            [[self._vocab[i] for i in row] for row in ids],
            max_batch_size=self.batch_size,
            beam_size=num_beams,
            num_hypotheses=num_return_sequences,
            max_length=self.max_new_tokens,  # new tokens: the prompt is not counted without it in the result
            include_prompt_in_result=False,
            end_token=[self.tokenizer.eos_token_id],
            return_end_token=False,
            suppress_sequences=self._suppress,
        )
        return [[parse_completion(self.format, self.task, t)
                 for t in self.tokenizer.batch_decode(r.sequences_ids, skip_special_tokens=True)] for r in results]

    # Greedy, beam and verified decoding exactly as the torch runtime does them, over `generate`.
    predict = Generator.predict
