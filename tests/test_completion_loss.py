"""The completion-only loss equals the stock causal-LM loss, value and gradients.

    .venv/bin/python -m pytest -q tests/test_completion_loss.py
"""

from __future__ import annotations

import pytest
import torch

from seqtune.pipeline.completion_loss import completion_loss, supports_completion_loss
from seqtune.pipeline.sft_data import Collator, encode_batch


def _batch(tokenizer):
    rows = encode_batch(tokenizer, ["CCO =>", "c1ccccc1O =>", "C =>"], [" ethanol", " phenol", " methane"])
    return Collator(tokenizer.pad_token_id)(rows)


@pytest.mark.parametrize("num_items", [None, 7])
def test_same_loss_and_gradients_as_full_logits(lively_model_dir, num_items):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lively_model_dir)
    batch = _batch(tok)
    ref_model = AutoModelForCausalLM.from_pretrained(lively_model_dir)
    fast_model = AutoModelForCausalLM.from_pretrained(lively_model_dir)
    assert supports_completion_loss(fast_model)
    kw = {"num_items_in_batch": torch.tensor(num_items)} if num_items else {}
    ref = ref_model(**batch, **kw).loss
    fast = completion_loss(fast_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                           torch.tensor(num_items) if num_items else None)
    assert ref.item() > 0.5  # a random model: a loss far from zero, so equality means something
    assert abs(fast.item() - ref.item()) < 1e-5
    ref.backward()
    fast.backward()
    for (name, a), b in zip(ref_model.named_parameters(), fast_model.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_padding_and_prompt_positions_never_reach_the_head(lively_model_dir):
    """Changing what a masked position would predict must not change the loss."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lively_model_dir)
    model = AutoModelForCausalLM.from_pretrained(lively_model_dir)
    batch = _batch(tok)
    calls = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    completion_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    handle.remove()
    labelled = int((batch["labels"] != -100).sum())  # every completion token incl. EOS
    assert calls == [labelled] and labelled < batch["input_ids"].numel()
