"""Property test: hostile inputs through `predict_items`, the one path the service's three
endpoints and `seqtune predict` share, never raise and always say what was wrong.

    .venv/bin/python -m pytest -q tests/test_input_fuzz.py

Inputs are SMILES-like and name-like strings mixed with unicode, control characters, huge
ring-bond numbers (`C%99999`, `C1...C99`), deep branch nesting (`C(C(C(...)))`) and lone
surrogates, for every task, with the tiny model (the model is not what is under test: the
validation, batching and per-item errors around it are). Each example is one batch of items;
the test counts the cases tried and prints the count.
"""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtune.inference.cards import MODEL_CARD
from seqtune.inference.loader import load_generator
from seqtune.serving.predict import predict_items

TASKS = ["smiles2iupac", "smiles2formula", "iupac2smiles"]
MAX_LEN = 300  # params.yaml serve.max_input_length

nested = st.integers(1, 200).map(lambda n: "C(" * n + "C" + ")" * n)
unclosed = st.integers(1, 400).map(lambda n: "C(" * n)
ring_numbers = st.integers(0, 10**9).map(lambda n: f"C%{n}CC%{n}" if n > 99 else f"C{n}CCC{n}")
many_rings = st.integers(1, 100).map(lambda n: "".join(f"C%{10 + i}" for i in range(n)) + "C" + "".join(f"%{10 + i}" for i in range(n)))
charged = st.integers(-(10**6), 10**6).map(lambda q: f"[C{q:+d}]")
chem_chars = st.text(alphabet="CNOSPFBrIclnos()[]=#$@+-.%/\\*:~0123456789 ", max_size=80)
anything = st.text(max_size=80)  # every unicode category, control characters included
surrogates = st.text(alphabet=st.characters(categories=["Cs", "Cc", "Zl", "Zp", "Cf"]), min_size=1, max_size=20)
name_like = st.lists(st.sampled_from(["2-", "methyl", "prop", "an", "-1-", "ol", "benz", "ene", "(", ")", "[", "]",
                                      ",", "N-", "oxy", "yl", "hexa", "deca", "1,2,3,4,5,6,7,8,9,10-", "λ⁵", "\u200b"]),
                     max_size=40).map("".join)
item = st.one_of(nested, unclosed, ring_numbers, many_rings, charged, chem_chars, anything, surrogates, name_like,
                 st.just(""), st.just(" "), st.just("C" * (MAX_LEN + 1)), st.integers(), st.none(), st.floats())


@pytest.fixture(scope="module")
def generators(tiny_model_dir, tmp_path_factory):
    out = {}
    for task in TASKS:
        folder = tmp_path_factory.mktemp(task) / "model"
        shutil.copytree(tiny_model_dir, folder)
        (folder / MODEL_CARD).write_text(json.dumps({"task": task, "format": "plain"}))
        out[task] = load_generator(folder, max_new_tokens=4, batch_size=8)
    return out


CASES = {"batches": 0, "items": 0}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(task=st.sampled_from(TASKS), items=st.lists(item, min_size=1, max_size=8))
def test_hostile_inputs_never_raise(generators, task, items):
    results = predict_items(generators[task], items, max_input_length=MAX_LEN)
    CASES["batches"] += 1
    CASES["items"] += len(items)
    assert len(results) == len(items)
    for it, r in zip(items, results):
        assert {"input", "output", "valid", "verified", "error"} <= set(r)
        json.dumps(r)  # every result serialises as the service's JSON answer
        if r["valid"]:
            assert isinstance(it, str) and len(it) <= MAX_LEN and r["error"] is None
        else:
            assert isinstance(r["error"], str) and r["error"] and r["output"] is None
        if not isinstance(it, str) or len(it) > MAX_LEN:
            assert not r["valid"]


def test_report_cases_tried():
    """Runs after the property test (file order): the count docs/testing.md quotes."""
    if not CASES["batches"]:
        pytest.skip("selected without the property test: nothing was counted")
    print(f"\ninput fuzz: {CASES['batches']} batches, {CASES['items']} items tried, 0 exceptions")
    assert CASES["batches"] >= 150
