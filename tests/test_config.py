"""Config validation: the shipped params.yaml is valid; mistakes name their key."""

from __future__ import annotations

import pytest
import yaml

from seqtune.config import ConfigError, Params, load_params, load_section, parse_params
from tests.conftest import REPO


def test_shipped_params_yaml_is_valid():
    p = load_params(REPO / "params.yaml")
    assert isinstance(p, Params)
    assert p.tasks == ["smiles2iupac"]  # make run's ~40 minutes go to the task that shows the method


def test_shipped_params_sets_every_field_explicitly():
    # Everything a user can change lives in params.yaml: no section may rely on a hidden default.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, field in Params.model_fields.items():
        assert name in raw, f"params.yaml lacks section {name}"
        if name == "tasks":
            continue
        model = field.annotation
        missing = set(model.model_fields) - set(raw[name])
        assert not missing, f"params.yaml section {name} lacks {sorted(missing)}"


def test_code_defaults_are_params_yaml():
    """One source of every default: a section params.yaml leaves out runs as params.yaml says.
    (What runs from before a key ran with is seqtune.experiments.runs.BEFORE_KEY, not this.)"""
    from seqtune.config import flatten

    code = flatten(Params().model_dump())
    shipped = flatten(load_params(REPO / "params.yaml").model_dump())
    differ = {k: (code.get(k), shipped.get(k)) for k in code.keys() | shipped.keys() if code.get(k) != shipped.get(k)}
    assert not differ, f"code default vs params.yaml: {differ}"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"epoch": 3}}, "train.epoch: unknown key"),
        ({"train": {"lora": {"rank": 3}}}, "train.lora.rank: unknown key"),
        ({"data": {"format": "xml"}}, "data.format"),
        ({"molecules": {"source": "file"}}, "path is required"),
        ({"tasks": ["smiles2iupac", "nope"]}, "unknown task"),
        ({"evaluate": {"size_buckets": [20, 10]}}, "evaluate.size_buckets"),
        ({"serve": {"decoding": {"smiles2iupca": "verified"}}}, "unknown task"),
        ({"serve": {"decoding": {"smiles2iupac": "beam"}}}, "serve.decoding"),
        ({"tracking_server": {"auth": "basci"}}, "tracking_server.auth"),
        ({"tracking_server": {"database": "d" * 59}}, "tracking_server.database"),
    ],
)
def test_bad_values_name_the_key(raw, needle):
    with pytest.raises(ConfigError) as e:
        parse_params(raw, "params.yaml")
    assert needle in str(e.value)


def test_load_section_returns_typed_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 3, "method": "lora"}}))
    train = load_section("train", path)
    assert train.epochs == 3 and train.method == "lora" and train.lora.r == 16


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="no params section"):
        load_section("nope", REPO / "params.yaml")


def test_serve_decoding_is_one_for_all_or_one_per_task():
    # The service and `seqtune predict` ask decoding_for(task): a mapping names the tasks that
    # decode otherwise, and every task it leaves out stays greedy (verified beams cost ~4x).
    per_task = parse_params({"serve": {"decoding": {"smiles2iupac": "verified"}}}, "params.yaml").serve
    assert [per_task.decoding_for(t) for t in ("smiles2iupac", "smiles2formula")] == ["verified", "greedy"]
    for_all = parse_params({"serve": {"decoding": "verified"}}, "params.yaml").serve
    assert for_all.decoding_for("iupac2smiles") == "verified"
