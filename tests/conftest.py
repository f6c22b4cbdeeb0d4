"""Shared fixtures: an offline, isolated environment and a tiny in-process model.

    make test            # or: .venv/bin/python -m pytest -q -m "not slow"
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Offline and quiet before anything imports transformers/mlflow/dvc/bentoml.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for k, v in {
    "GIT_AUTHOR_NAME": "seqtune-tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "seqtune-tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
}.items():
    os.environ.setdefault(k, v)

import torch  # noqa: E402

# Tiny models on 2 cores: one thread is dramatically faster than oversubscribing.
torch.set_num_threads(1)

from tests import ci  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config):
    """In CI (`CI` set, as .ci/run does) a skipped test fails the session: tests/ci.py."""
    ci.register(config)


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """A migrated, empty MLflow sqlite store: creating one costs ~10 s of schema migrations,
    copying one costs nothing."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session", autouse=True)
def _precision_cache(tmp_path_factory):
    """The measured bf16 verdict (seqtune.inference.precision) is cached in a session folder,
    never the user's ~/.cache: at most one measurement per session, subprocesses included."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQTUNE_CACHE_DIR", str(tmp_path_factory.mktemp("seqtune-cache")))
        yield


@pytest.fixture(autouse=True)
def _isolated_stores(tmp_path, tmp_path_factory, monkeypatch, empty_mlflow_db):
    """Every test gets its own (pre-migrated) MLflow store and BentoML home (absolute paths)."""
    store = tmp_path_factory.mktemp("mlflow")  # beside tmp_path: tests' own folders stay theirs
    shutil.copy(empty_mlflow_db, store / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer Llama with a character tokenizer (built once per session)."""
    from seqtune.pipeline.tiny_model import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "base")


def shipped_params(overrides: dict | None = None) -> dict:
    """The shipped params.yaml as a dict (the real-molecule source a small fixture file), each
    section updated by `overrides` (a section that is not a mapping, like `tasks`, is replaced)."""
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    # The shipped real-molecule source fetches a 22 MB wheel (chedl): tests read a small file
    # instead, unless they set the section (test_real_molecules covers the shipped source).
    raw["real_molecules"].update(source="file", path=str(FIXTURES / "real_molecules.smi"), per_band=4,
                                 band_edges=[3, 9, 16, 31], workers=1)
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return raw


@pytest.fixture
def params_file(tmp_path):
    """Write a params.yaml (shipped file + overrides) into tmp_path and return its path.

    Usage: params_file({"data": {"n_train": 10}})"""
    import yaml

    def make(overrides: dict | None = None) -> Path:
        raw = shipped_params(overrides)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return make


@pytest.fixture(scope="session")
def lively_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with large random weights: unlike the near-uniform default init (whose
    greedy output is empty for every prompt), its outputs differ per input and per decoding,
    so comparing two code paths' outputs can actually fail."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("lively") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out
