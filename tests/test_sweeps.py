"""Sweep definitions validate against the params schema; typos are caught before queueing."""

from __future__ import annotations

import pytest
import yaml

from seqtune.config import ConfigError
from seqtune.sweeps import apply_overrides, load_sweeps, parse_queue_status, plan
from tests.conftest import REPO


@pytest.mark.parametrize("sweeps_file", ["sweeps.yaml", "sweeps-paper.yaml"])
def test_shipped_sweeps_validate_and_cover_the_findings(sweeps_file):
    sf = load_sweeps(REPO / sweeps_file, REPO / "params.yaml")
    assert {"specialist", "data_size", "epochs", "format", "base_model", "method"} <= set(sf.sweeps)
    xs = [p["data.n_train"] for p in sf.sweeps["data_size"].points]
    assert xs == sorted(xs) and len(set(xs)) >= 3
    formats = {p["data.format"] for p in sf.sweeps["format"].points}
    assert formats == {"plain", "instruction", "chat"}


def test_plan_runs_a_shared_configuration_once():
    experiments = plan(["format", "data_size", "epochs"], sweeps_path=REPO / "sweeps.yaml", params=REPO / "params.yaml")
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
    sf = load_sweeps(REPO / "sweeps-paper.yaml", REPO / "params.yaml")
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
