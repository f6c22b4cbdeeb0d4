"""Causal-LM loss that runs the output head only where a label is not ignored.

    .venv/bin/python -m pytest -q tests/test_completion_loss.py

The prompt is masked (labels -100), yet a stock causal-LM forward still projects every
position through the LM head (576 x 49,152 for SmolLM2; for Gemma 3's 262k vocabulary the
head is most of the model's FLOPs) and builds a (batch, length, vocab) logits tensor. Only
the positions that predict a label contribute to the loss, so this computes the decoder's
hidden states, gathers the positions whose *next* token is labelled, and runs the head and
cross-entropy on those rows alone: the same loss (tested to 1e-5 against the full
computation), less compute and memory. Used by `seqtune.pipeline.train` when
`train.completion_only_logits` is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqtune.pipeline.sft_data import IGNORE_INDEX


def _core(model):
    """The causal-LM module under a peft wrapper (LoRA layers are injected in place, so the
    base model's decoder already runs them)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_completion_loss(model) -> bool:
    """Whether the model exposes a decoder and an output head this loss can call."""
    core = _core(model)
    try:
        return core.get_decoder() is not None and core.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def completion_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                    num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled next tokens (or their sum / `num_items_in_batch`, as
    transformers normalises across gradient-accumulation steps)."""
    core = _core(model)
    hidden = core.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    # Position t predicts token t+1: shift the labels left, as ForCausalLMLoss does.
    target = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    keep = target != IGNORE_INDEX
    logits = core.get_output_embeddings()(hidden[keep]).float()
    cap = getattr(core.config, "final_logit_softcapping", None)
    if cap:  # Gemma: logits are soft-capped before the loss
        logits = torch.tanh(logits / cap) * cap
    if num_items_in_batch is None:
        return F.cross_entropy(logits, target[keep])
    loss = F.cross_entropy(logits, target[keep], reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch
