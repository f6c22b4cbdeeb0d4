"""Sweep definitions validate against the params schema; typos are caught before queueing; a
sweep's cost counts tokens per example on a sample of each point's own data."""

from __future__ import annotations

import itertools
import os
import subprocess
import time

import pytest
import yaml

from seqtune.config import ConfigError
from seqtune.experiments.sweeps import apply_overrides, load_sweeps, parse_queue_status, plan
from tests.conftest import REPO


@pytest.mark.parametrize("sweeps_file", ["sweeps/cpu.yaml", "sweeps/quick.yaml", "sweeps/paper.yaml"])
def test_shipped_sweeps_validate_and_cover_the_findings(sweeps_file):
    sf = load_sweeps(REPO / sweeps_file, REPO / "params.yaml")
    assert {"specialist", "data_size", "epochs", "format", "base_model", "method"} <= set(sf.sweeps)
    xs = [p["data.n_train"] for p in sf.sweeps["data_size"].points]
    assert xs == sorted(xs) and len(set(xs)) >= 3
    formats = {p["data.format"] for p in sf.sweeps["format"].points}
    assert formats == {"plain", "instruction", "chat"}


def test_plan_runs_a_shared_configuration_once():
    experiments = plan(["format", "data_size", "epochs"], sweeps_path=REPO / "sweeps" / "cpu.yaml", params=REPO / "params.yaml")
    # format[0] (plain), data_size[2] (1000) and epochs[0] are the same reference run.
    shared = [e for e in experiments if "format[0]" in e.points]
    assert len(shared) == 1 and {"data_size[2]", "epochs[0]"} <= set(shared[0].points)
    assert shared[0].tasks == ["smiles2formula", "smiles2iupac"]  # the union of the points' tasks
    assert len(experiments) == 3 + 4 + 1 - 2
    cmd = shared[0].command()
    assert cmd[:5] == ["dvc", "exp", "run", "--queue", "-n"] and cmd[5].startswith("format-0-")
    assert "tasks=[smiles2formula,smiles2iupac]" in cmd and "data.format=plain" in cmd
    names = [e.name for e in experiments]
    assert len(set(names)) == len(names)


def test_apply_overrides_sets_nested_keys_without_touching_input():
    raw = {"train": {"epochs": 1, "lora": {"r": 8}}}
    out = apply_overrides(raw, {"train.lora.r": 4, "data.n_train": 5})
    assert out == {"train": {"epochs": 1, "lora": {"r": 4}}, "data": {"n_train": 5}}
    assert raw["train"]["lora"]["r"] == 8


@pytest.mark.parametrize(
    ("sweep", "needle"),
    [
        ({"finding": "f", "x": "train.epochs", "points": [{"train.epochz": 2}]}, "epochz: unknown key"),
        ({"finding": "f", "x": "train.epochs", "points": [{"train.epochs": -1}]}, "train.epochs"),
        ({"finding": "f", "x": "data.n_train", "points": [{"train.epochs": 2}]}, "must set its x key"),
        ({"finding": "f", "x": "train.epochs", "points": []}, "invalid sweeps file"),
    ],
)
def test_bad_sweeps_are_errors(tmp_path, sweep, needle):
    path = tmp_path / "sweeps.yaml"
    path.write_text(yaml.safe_dump({"sweeps": {"bad": sweep}}))
    with pytest.raises(ConfigError, match=needle):
        load_sweeps(path, REPO / "params.yaml")


def test_paper_profile_is_the_methods_scale():
    sf = load_sweeps(REPO / "sweeps/paper.yaml", REPO / "params.yaml")
    assert [p["data.n_train"] for p in sf.sweeps["data_size"].points] == [10_000, 100_000, 1_000_000]
    assert max(p.get("train.epochs", 0) for p in sf.sweeps["epochs"].points) >= 30
    models = {p["base_model.name"] for p in sf.sweeps["base_model"].points}
    assert {"facebook/opt-125m", "facebook/opt-350m", "facebook/opt-1.3b"} <= models


def test_special_x_needs_no_key_but_others_do(tmp_path):
    path = tmp_path / "sweeps.yaml"
    path.write_text(yaml.safe_dump({"sweeps": {"s": {"finding": "f", "x": "baseline", "points": [{}]}}}))
    assert load_sweeps(path, REPO / "params.yaml").sweeps["s"].x == "baseline"


def test_queue_status_parsing_finds_waiting_experiments():
    text = """Task     Name                 Created    Status
23ff60d  epochs-0-8cc86d      02:29 AM   Success
93f05f1  method-1-d02cb4      02:29 AM   Running
d71bc77  data_size-0-916298   02:29 AM   Queued
0a1b2c3  format-1-ccd08e      02:29 AM   Failed

Worker status: 1 active, 0 idle
"""
    assert parse_queue_status(text) == {"method-1-d02cb4": "Running", "data_size-0-916298": "Queued"}


def test_queue_skips_a_configuration_waiting_under_another_points_name(monkeypatch, caplog):
    from seqtune.experiments import sweeps

    ref = next(e for e in plan(["format", "data_size"], sweeps_path=REPO / "sweeps" / "cpu.yaml", params=REPO / "params.yaml")
               if "data_size[2]" in e.points)
    # The reference configuration was queued by the specialist sweep, under its name.
    running = "specialist-0-" + ref.name.rsplit("-", 1)[-1]
    monkeypatch.setattr(sweeps, "pending_experiments", lambda: {running: "Running"})
    calls = []
    monkeypatch.setattr(sweeps.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    with caplog.at_level("INFO", logger="seqtune.experiments.sweeps"):
        sweeps.queue(["data_size"], sweeps_path=REPO / "sweeps" / "cpu.yaml", params=REPO / "params.yaml")
    assert f"already in the DVC queue as {running} (Running)" in caplog.text
    queued = [cmd[cmd.index("-n") + 1] for cmd in calls]
    assert len(queued) == 3 and not any(q.endswith(running[-6:]) for q in queued)


def test_a_hung_dvc_queue_is_killed_at_its_timeout(tmp_path, monkeypatch):
    from seqtune.experiments import sweeps

    # A `dvc` that never answers (exec: the kill reaches the sleep itself).
    dvc = tmp_path / "dvc"
    dvc.write_text("#!/bin/sh\nexec sleep 120\n")
    dvc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sweeps, "pending_experiments", dict)
    monkeypatch.setattr(sweeps, "QUEUE_TIMEOUT_S", 1)
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired, match="dvc"):
        sweeps.queue(["data_size"], sweeps_path=REPO / "sweeps" / "cpu.yaml", params=REPO / "params.yaml")
    assert time.monotonic() - start < 60


# ---------------------------------------------------------------------------------------
# cost: tokens per example counted on a sample of each point's own data

COST_PARAMS = {
    "tasks": ["smiles2formula"],
    "molecules": {"source": "rdkit-samples", "max_raw": 300, "max_heavy_atoms": 18, "workers": 1},
    "data": {"n_train": 5000, "n_test": 5000, "workers": 1, "chunk_size": 64, "format": "plain"},  # more than there are
    "base_model": {"name": "tiny"},
    "train": {"max_length": 512},
}


def test_spread_sample_covers_all_records_in_one_pass():
    from seqtune.experiments.sample_tokens import spread

    kept, total = spread(iter(range(10_000)), 100)  # an iterator: one pass, length unknown
    assert total == 10_000 and len(kept) == 100 and kept == sorted(set(kept))
    assert kept[0] == 0 and kept[-1] >= 9_700  # the whole range, not its start
    assert max(b - a for a, b in itertools.pairwise(kept)) <= 2 * 10_000 / 100
    assert spread(iter(range(50)), 100) == (list(range(50)), 50)  # fewer than n: all of them


def test_sampled_tokens_per_example_are_what_the_stages_make(tmp_path, monkeypatch, params_file):
    """The sample's count equals the data stage's examples tokenized as training tokenizes
    them, when the sample holds every record the molecules stage reads."""
    import pandas as pd

    from seqtune import paths
    from seqtune.config import load_params
    from seqtune.experiments.sample_tokens import Sampler
    from seqtune.pipeline import data, molecules
    from seqtune.inference.formats import _INSTRUCTION_TEMPLATE
    from seqtune.pipeline.tiny_model import build_tiny_tokenizer
    from seqtune.pipeline.sft_data import encode_examples
    from seqtune.tasks import get_task

    monkeypatch.chdir(tmp_path)
    params = params_file(COST_PARAMS)
    molecules.main(params=params)
    data.main("smiles2formula", params=params)
    made = pd.concat([pd.read_parquet(paths.dataset_dir("smiles2formula") / f"{s}.parquet") for s in ("train", "val", "test")])
    enc = encode_examples(build_tiny_tokenizer(), made.prompt.tolist(), made.completion.tolist(), 512)
    expected = sum(r["length"] for r in enc.rows) / len(enc.rows)

    sampler = Sampler(300)
    p = load_params(params)
    plain = sampler.count(p, "smiles2formula")
    assert plain.examples == len(made) and plain.mean == pytest.approx(expected) and plain.tokenizer == "tiny"
    assert plain.exact and plain.problem is None and "rdkit-samples" in plain.describe()
    # The tiny tokenizer's tokens are characters (a run of newlines is one unknown token), so
    # the instruction format adds its template's tokens to every example, less the plain
    # separator " =>" and the completion's leading space.
    instruction = sampler.count(p.model_copy(update={"data": p.data.model_copy(update={"format": "instruction"})}),
                                "smiles2formula")
    tok = build_tiny_tokenizer()
    template = len(tok(_INSTRUCTION_TEMPLATE.format(instruction=get_task("smiles2formula").instruction, source="C")).input_ids)
    assert instruction.mean == pytest.approx(plain.mean + template - 1 - len(" =>") - len(" "))
    assert instruction.examples == plain.examples


def _cost_sweeps(path, tokenizer_dir):
    path.write_text(yaml.safe_dump({"common": {"tasks": ["smiles2formula"]}, "sweeps": {
        "size": {"finding": "f", "x": "data.n_train",
                 "points": [{"data.n_train": 100, "train.epochs": 2}, {"data.n_train": 1000, "train.epochs": 3}]},
        "format": {"finding": "f", "x": "data.format", "points": [{"data.format": "plain"}, {"data.format": "instruction"}]},
        "model": {"finding": "f", "x": "base_model.name", "points": [
            {"base_model.name": "nonexistent/model-125m"},                     # no hub here: another tokenizer counts
            {"base_model.name": str(tokenizer_dir)},                           # a local tokenizer, no chat template
            {"base_model.name": str(tokenizer_dir), "data.format": "chat"}]},
        "source": {"finding": "f", "x": "molecules.source",
                   "points": [{"molecules.source": "file", "molecules.path": "missing.smi"}]},
    }}))
    return path


def test_cost_counts_each_point_on_its_own_sample(tmp_path, monkeypatch, params_file):
    from seqtune.experiments.cost import estimate, notes, table
    from seqtune.experiments.sample_tokens import Sampler
    from seqtune.pipeline.tiny_model import build_tiny_tokenizer

    monkeypatch.chdir(tmp_path)
    tok = build_tiny_tokenizer()
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "nochat")
    sweeps = _cost_sweeps(tmp_path / "sweeps.yaml", tmp_path / "nochat")
    est = {e.points: e for e in estimate(["size", "format", "model", "source"], sweeps_path=sweeps,
                                         params=params_file(COST_PARAMS), sample=Sampler(300, fallback="tiny"))}

    # Tokens scale with examples x epochs; the per-example count is the same sample's.
    small, large = est["size[0]"], est["size[1]"]
    assert small.tokens_per_example == large.tokens_per_example > 0 and small.source_run is None
    assert small.tokens == pytest.approx(100 * 2 * small.tokens_per_example)
    assert large.tokens == pytest.approx(1000 * 3 * large.tokens_per_example)
    assert est["format[1]"].tokens_per_example > est["format[0]"].tokens_per_example  # the template's tokens

    lines = table(list(est.values()), None)
    row = {ln.split(" | ")[0].lstrip("| "): ln.split(" | ")[5] for ln in lines[2:-1]}
    assert row["format[0]"].startswith(f"{est['format[0]'].tokens_per_example:.1f} ± ") and row["format[0]"].endswith("(s1)")
    # A base model whose tokenizer can't be loaded: counted by another, marked as such.
    assert row["model[0]"].startswith("≈ ") and row["model[0]"].endswith("(s1, tiny)")
    assert est["model[0]"].flops == pytest.approx(6 * 125e6 * est["model[0]"].tokens)
    # A local tokenizer folder: its own count (the same characters as the tiny model's).
    assert row["model[1]"].endswith("(s1)") and not row["model[1]"].startswith("≈")
    assert est["model[1]"].tokens_per_example == est["format[0]"].tokens_per_example
    # Chat without a chat template, and an unreadable source: not measured, and why.
    assert row["model[2]"] == f"not measured (no chat template in the {tmp_path / 'nochat'} tokenizer)"
    assert row["source[0]"].startswith("not measured (no sample: file missing.smi: ")
    text = "\n".join(notes(list(est.values())))
    assert "*s1*:" in text and "rdkit-samples" in text and "*s2*" not in text  # one sample, described once


def test_every_key_a_committed_run_lacks_has_a_dated_pre_key_value():
    """A run record from before a key existed matches only through runs.BEFORE_KEY: a new
    result-changing key without an entry would silently unmatch (or mismatch) old runs."""
    import json
    import re

    from seqtune.config import load_params
    from seqtune.experiments.runs import BEFORE_KEY, signature

    cols = [c for c in signature(load_params(REPO / "params.yaml")) if c.startswith("params.")]
    records = [json.loads(f.read_text()) for f in sorted((REPO / "reports" / "runs").glob("*.json"))]
    assert records
    lacking = {c[len("params."):] for r in records for c in cols if r["row"].get(c) in (None, "")}
    assert lacking <= BEFORE_KEY.keys(), f"keys old runs lack with no BEFORE_KEY entry: {sorted(lacking - BEFORE_KEY.keys())}"
    for key, (day, value) in BEFORE_KEY.items():
        assert re.fullmatch(r"2026-\d\d-\d\d", day) and isinstance(value, str), key
