"""Data formats: how a (source, target) pair is written as a prompt and a completion.

    seqtune data smiles2iupac      # writes prompt/completion in params.yaml's data.format

The format is a first-class parameter because the method found it decisive. It is recorded
with the data and with the trained model (`seqtune.json`), and evaluation and serving build
prompts with this same function, so a model is always queried the way it was trained.
The completion never carries EOS: training appends the tokenizer's EOS token itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from seqtune.tasks.base import Task

Format = Literal["plain", "instruction", "chat"]
FORMATS: tuple[str, ...] = ("plain", "instruction", "chat")

_INSTRUCTION_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{source}\n\n### Response:\n"


def render_prompt(fmt: str, task: Task, source: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The prompt text for `source` in format `fmt` (what the model sees before its answer)."""
    if fmt == "plain":
        # Bare input and a separator: the model must learn the task from the data alone.
        return f"{source} =>"
    if fmt == "instruction":
        return _INSTRUCTION_TEMPLATE.format(instruction=task.instruction, source=source)
    if fmt == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "data.format 'chat' needs a tokenizer with a chat template; "
                "use a chat model (e.g. smollm2-135m) or data.format: instruction"
            )
        messages = [{"role": "user", "content": f"{task.instruction}\n{source}"}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def render_completion(fmt: str, target: str) -> str:
    """The completion text for `target` (a leading space after the plain separator)."""
    return f" {target}" if fmt == "plain" else target
