"""Frozen lower layers for `train.freeze_layers: N`: the base model's embeddings and its first N
decoder layers keep their weights, so the backward pass stops at layer N.

    seqtune train smiles2iupac      # with train.freeze_layers: 10 in params.yaml

Why: on a CPU a full fine-tuning step's backward costs about twice its forward (gradients of
activations and of weights in every layer). With the lower N of L layers frozen, nothing below
layer N needs a gradient at all, and autograd builds no graph there: a step costs roughly
(2 + 4 (L-N)/L) / 6 of a full one. `bench/train_step.py --methods full,frozen:10,lora` measures
what it buys in tokens/s and counts the FLOPs each executes; whether the model learns as much
per CPU-hour is a training run's question (the specialist findings).

What "lower" means is the model's own: the input embeddings (and any other `embed*` parameter
outside the decoder layers, such as OPT's learned positions: a trainable one would pull the
backward pass down to the input again) plus layers [0, N). A model whose LM head shares the
input embedding matrix (SmolLM2 and Gemma tie them) keeps its head frozen too: the head is
that matrix. The final norm and an untied head train.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the `ModuleList` with `config.num_hidden_layers`
    entries (Llama/Gemma `model.layers`, OPT `model.decoder.layers`, GPT-NeoX `gpt_neox.layers`)."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {n} decoder layers found, so train.freeze_layers cannot "
                     "tell its lower layers; use train.freeze_layers: 0 for this model")


def freeze_lower_layers(model: torch.nn.Module, n: int) -> dict[str, int]:
    """Freeze the input embeddings and decoder layers [0, n) of `model` in place; returns the
    parameter counts {"frozen_layers", "trainable_params", "total_params"} (tied matrices once)."""
    layers = decoder_layers(model)
    if not 0 <= n < len(layers):
        raise ValueError(f"train.freeze_layers {n}: this model has {len(layers)} decoder layers; "
                         f"freeze 0 to {len(layers) - 1} of them (all of them would leave only the final norm to train)")
    unique = {id(p): p for p in model.parameters()}  # named_parameters() skips a tied matrix's second name
    if n:
        upper = {id(p) for layer in layers[n:] for p in layer.parameters()}
        lower = {id(p) for layer in layers[:n] for p in layer.parameters()}
        lower.update(id(p) for p in model.get_input_embeddings().parameters())
        lower.update(id(p) for name, p in model.named_parameters()
                     if id(p) not in upper and "embed" in name.rsplit(".", 1)[0])
        for pid in lower:
            unique[pid].requires_grad_(False)
    trainable = sum(p.numel() for p in unique.values() if p.requires_grad)
    total = sum(p.numel() for p in unique.values())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    log.info("freeze_layers %d of %d: %.1fM of %.1fM parameters train%s", n, len(layers), trainable / 1e6, total / 1e6,
             " (the LM head is the tied input embedding: frozen with it)" if tied and n else "")
    return {"frozen_layers": n, "trainable_params": trainable, "total_params": total}
