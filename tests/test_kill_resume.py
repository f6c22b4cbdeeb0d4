"""Kill at any point, lose nothing: `dvc repro` killed with SIGKILL inside every stage, rerun,
ends with the outputs of an uninterrupted run and a consistent registry.

    .venv/bin/python -m pytest -q -s tests/test_kill_resume.py     # prints kill points tried/survived

One task (smiles2formula: RDKit only) on the tiny model, two epochs with a checkpoint every
two steps, so a killed training has something to resume from. The kills come one after the
other in one repository, each rerun being killed at the next point, then a last rerun
completes: that is also how a user meets them (kill, rerun, kill again...).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests import kill_harness as kh
from tests.test_pipeline import TINY_PARAMS

TASK = "smiles2formula"
NAME = f"seqtune-{TASK}"
PARAMS = {**TINY_PARAMS, "tasks": [TASK], "train": {**TINY_PARAMS["train"], "epochs": 2, "save_steps": 2}}

KILL_POINTS = [
    kh.KillPoint("molecules: fragmenting", r"^fragment:\s+[1-9]\d?%"),
    kh.KillPoint("molecules: standardising", r"^standardise:\s+[1-9]\d?%"),
    kh.KillPoint("data: writing the training split", rf"^{TASK} train:"),
    kh.KillPoint("train: step 3 (checkpoint 2 saved)", r"\{'loss'", nth=3),
    kh.KillPoint("train: resumed, 3 steps later (checkpoint 4 saved)", r"\{'loss'", nth=3),
    kh.KillPoint("evaluate: generating", r"evaluating data/models", delay_s=0.5),
    # Inside the upload, which ends seconds later, before the version exists (a fixed delay
    # after the stage's start landed after "Created version" on a fast CPU: the next point
    # then never came).
    kh.KillPoint("register: logging the model", r"uploading the model", delay_s=0.3,
                 before=r"Created version '"),
    kh.KillPoint("register: version created, alias not yet decided", r"Created version '"),
]


def _no_half_written_files(repo) -> list[str]:
    """Every output present after a kill is whole: JSON parses, weights pass the checks."""
    from seqtune.inference.weights import check_weights

    bad = []
    for f in [*repo.glob("data/**/*.json"), *repo.glob("metrics/*.json")]:
        try:
            json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad.append(str(f.relative_to(repo)))
    for d in {p.parent for p in repo.glob("data/models/**/*.safetensors")}:
        try:
            check_weights(d)
        except Exception as e:  # noqa: BLE001
            bad.append(f"{d.relative_to(repo)}: {e}")
    if (repo / "dvc.lock").exists():
        yaml.safe_load((repo / "dvc.lock").read_text())
    return bad


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_in_every_stage_then_rerun_equals_an_uninterrupted_run(tmp_path, empty_mlflow_db):
    from mlflow import MlflowClient

    from seqtune.pipeline import registry_store as store

    ref = kh.make_repo(tmp_path / "reference", PARAMS, empty_mlflow_db)
    kh.repro(ref)
    expected = kh.outputs(ref)
    assert any(k.endswith("model.safetensors") for k in expected)

    repo = kh.make_repo(tmp_path / "killed", PARAMS, empty_mlflow_db)
    survived, log = 0, []
    for point in KILL_POINTS:
        killed, lines = kh.repro_killed_at(repo, point)
        assert killed, f"{point.name}: the pipeline ended before the kill point; its output:\n" + "\n".join(lines[-40:])
        bad = _no_half_written_files(repo)
        assert not bad, f"after the kill at {point.name}, half-written outputs: {bad}"
        survived += 1
        log.append(point.name)
    kh.repro(repo)
    summary = json.loads((repo / "data" / "models" / TASK / "training_summary.json").read_text())
    assert summary["resumed_from_step"] == 4, summary  # killed twice in training, resumed twice

    got = kh.outputs(repo)
    differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
    assert not differ, f"outputs differ from the uninterrupted run: {differ}"

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    versions = store.versions(client, NAME)
    hashes = [v.tags["content_hash"] for v in versions]
    assert len(hashes) == len(set(hashes)), "a duplicate version"
    assert all("alias_decision" in (v.tags or {}) for v in versions), "a version left undecided"
    champion = store.get_alias(client, NAME, "champion")
    assert champion.tags["content_hash"] == store.content_hash(repo / "data" / "models" / TASK)
    # The champion's files are all there: download and check its weights.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path / "dl"))
    from seqtune.inference.weights import check_weights

    check_weights(next(p.parent for p in (tmp_path / "dl").rglob("model.safetensors")))
    assert not client.search_registered_models(f"name='{NAME}.lock'")
    print(f"\nkill -9 points tried: {len(KILL_POINTS)}, survived: {survived} "
          f"({', '.join(log)}); outputs equal the uninterrupted run ({len(expected)} files); "
          f"{len(versions)} version(s), champion v{champion.version} complete; downloaded to {local}")
