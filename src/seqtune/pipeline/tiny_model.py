"""The `tiny` base model: a random few-layer Llama with a character tokenizer, built in-process.

    python -c "from seqtune.pipeline.tiny_model import build_tiny; build_tiny('/tmp/tiny')"

`base_model.name: tiny` resolves to it (stage `base_model`); tests and benchmarks build it
directly, as it needs no download and trains in seconds.
"""

from __future__ import annotations

import string
from pathlib import Path

# Character-level vocabulary of the tiny test model: every printable ASCII character is one
# token, so SMILES, names and formulas all tokenize without unknowns.
_TINY_SPECIALS = ["<pad>", "<unk>", "<s>", "<|im_end|>", "<|im_start|>"]
_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer():
    """A character-level fast tokenizer with SmolLM2's special-token layout and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\x0b\x0c"]
    vocab = {t: i for i, t in enumerate(_TINY_SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=_TINY_CHAT_TEMPLATE,
    )


def build_tiny(out_dir: Path | str, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Write a random tiny Llama (SmolLM2's architecture) + character tokenizer to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
