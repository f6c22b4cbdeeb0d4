"""Data formats: how a (source, target) pair is written as a prompt and a completion.

    seqtune data smiles2iupac      # writes prompt/completion in params.yaml's data.format

The format is a first-class parameter because the method found it decisive. It is recorded
with the data and with the trained model (`seqtune.json`), and evaluation and serving build
prompts with this same function, so a model is always queried the way it was trained.
The completion never carries EOS: training appends the tokenizer's EOS token itself.

`atoms` is the plain format with every SMILES atom, bond, ring digit and bracket atom as its
own space-separated token (ring digits stay on their atom; the regex of Schwaller et al., Molecular Transformer): BPE merges
SMILES characters unpredictably ("CCO" and "CC(=O)" share no tokens), so counting atoms or
copying structure is harder than it needs to be. SMILES contain no spaces, so a generated
SMILES is read back by `parse_completion` exactly.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from seqtune.tasks.base import Task

Format = Literal["plain", "instruction", "chat", "atoms"]
FORMATS: tuple[str, ...] = ("plain", "instruction", "chat", "atoms")

# One SMILES token: a bracket atom, a two-letter organic atom, one character, or a %nn ring bond.
_SMILES_TOKEN = re.compile(r"\[[^\]]+\]|Br|Cl|%\d{2}|.")


def smiles_tokens(smiles: str) -> list[str]:
    """`smiles` split into atoms, bonds, branches and ring digits (joined back, the same string)."""
    return _SMILES_TOKEN.findall(smiles)


def spaced_smiles(smiles: str) -> str:
    """Tokens space-separated, ring-closure digits kept on their atom ("c1 c c c c c1"): with a
    space of their own the SmolLM2 tokenizer spends two tokens per digit (measured: 24 vs 21
    tokens for aspirin; 18 unspaced, where "CC" and "cc" hide how many atoms there are)."""
    out: list[str] = []
    for tok in smiles_tokens(smiles):
        if out and (tok.isdigit() or tok.startswith("%")):
            out[-1] += tok
        else:
            out.append(tok)
    return " ".join(out)

_INSTRUCTION_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{source}\n\n### Response:\n"


def render_prompt(fmt: str, task: Task, source: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The prompt text for `source` in format `fmt` (what the model sees before its answer)."""
    if fmt == "plain":
        # Bare input and a separator: the model must learn the task from the data alone.
        return f"{source} =>"
    if fmt == "atoms":
        return f"{spaced_smiles(source) if task.source_kind == 'smiles' else source} =>"
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


def render_completion(fmt: str, task: Task, target: str) -> str:
    """The completion text for `target` (a leading space after the plain/atoms separator)."""
    if fmt == "atoms":
        return f" {spaced_smiles(target) if task.target_kind == 'smiles' else target}"
    return f" {target}" if fmt == "plain" else target


def parse_completion(fmt: str, task: Task, text: str) -> str:
    """The task's answer in a generated completion `text` (the inverse of `render_completion`)."""
    text = text.strip()
    if fmt == "atoms" and task.target_kind == "smiles":
        return text.replace(" ", "")
    return text
