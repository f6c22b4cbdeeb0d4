"""The answer-vocabulary LM head: logits for the tokens a model was trained to answer with, -inf
for every other token.

    python -c "from seqtune.inference.heads import AnswerHead; help(AnswerHead)"

A model folder that records the tokens its training answers used (`answer_token_ids` in
seqtune.json) decodes with this head on by default (`evaluate.answer_vocab`,
`serve.answer_vocab`): SmolLM2's head is 49,152 x 576, ~21% of the bytes each decode step
reads, and a smiles2iupac specialist answers with ~400 distinct tokens. Outputs are then
limited to those tokens, which a trained specialist's greedy choice practically always is
(`bench/decode_paths.py`, `bench/generation_speed.py` count the outputs that change). The
CTranslate2 runtime applies the same limit its own way (`seqtune.serving.ct2`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)


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


def greedy_token(head, logits: torch.Tensor) -> torch.Tensor:
    """The argmax token of each row of `logits` (batch x vocab) from `head`: over the answer
    tokens only when it is an AnswerHead (the rest are -inf), ~1.4 ms less per step at batch
    32 than over 49,152 columns; its ids are sorted, so ties break as the full argmax does."""
    if isinstance(head, AnswerHead):
        return head.ids[logits[:, head.ids].argmax(-1)]
    return logits.argmax(-1)
