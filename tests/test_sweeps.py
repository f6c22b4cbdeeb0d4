"""Sweep definitions validate against the params schema; typos are caught before queueing."""

from __future__ import annotations

import pytest
import yaml

from seqtune.config import ConfigError
from seqtune.sweeps import apply_overrides, load_sweeps, queue_commands
from tests.conftest import REPO


def test_shipped_sweeps_validate_and_cover_the_findings():
    sf = load_sweeps(REPO / "sweeps.yaml", REPO / "params.yaml")
    assert {"data_size", "epochs", "format", "base_model", "method"} <= set(sf.sweeps)
    xs = [p["data.n_train"] for p in sf.sweeps["data_size"].points]
    assert xs == sorted(xs) and len(set(xs)) >= 3
    formats = {p["data.format"] for p in sf.sweeps["format"].points}
    assert formats == {"plain", "instruction", "chat"}


def test_queue_commands_render_dvc_overrides():
    cmds = queue_commands("format", sweeps_path=REPO / "sweeps.yaml", params=REPO / "params.yaml")
    assert len(cmds) == 3
    assert cmds[0][:6] == ["dvc", "exp", "run", "--queue", "-n", "format-0"]
    assert "tasks=[smiles2formula]" in cmds[0] and "data.format=plain" in cmds[0]


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
