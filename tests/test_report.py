"""The findings report: verdict rules on hand-made scores, and `seqtune report` end to end on
real tiny-model runs (real data stage, Trainer, evaluation, MLflow store) made in the test.

    .venv/bin/python -m pytest -q tests/test_report.py
"""

from __future__ import annotations

import re

import pytest
import yaml

from seqtune.config import ConfigError
from seqtune.experiments.cost import model_params
from seqtune.experiments.evidence import RunEvidence, bound_se, change, paired, size_bins
from seqtune.tracking import RESUMED_TAG
from tests.conftest import REPO
from seqtune.experiments.verdicts import EpochCurve, epoch_verdict, plateau_epoch, spread_verdict, train_seconds, trend_verdict

TASK = "smiles2formula"


def _ev(exact: list[float], graded: list[float], run_id: str = "r" * 32) -> RunEvidence:
    items = [{"exact_match": e, "element_accuracy": g, "char_similarity": g, "output_len": 5.0, "heavy_atoms": 10}
             for e, g in zip(exact, graded)]
    return RunEvidence(run_id, TASK, None, items)


# ---------------------------------------------------------------------------------------
# statistics and verdicts on hand-made scores


def test_change_needs_two_standard_errors():
    assert change(0.10, 0.04) == "rises" and change(-0.10, 0.04) == "falls"
    assert change(0.07, 0.04) == "flat"  # under 2 SE: noise


def test_paired_difference_and_its_error():
    d, se = paired([0, 0, 1, 1], [1, 1, 1, 1])
    assert d == 0.5 and se == pytest.approx(0.2887, abs=1e-4)
    with pytest.raises(ValueError, match="same test items"):
        paired([1, 0], [1, 0, 1])


def test_bound_se_is_the_largest_possible_error():
    assert bound_se(0.5, 100) == pytest.approx(0.05) and bound_se(0.0, 100) == 0.0


N = 100


@pytest.mark.parametrize(
    ("small", "large", "status"),
    [
        (([0.0] * N, [0.5] * N), ([1.0] * 40 + [0.0] * 60, [0.8] * N), "supported"),
        (([0.0] * N, [0.3] * N), ([0.0] * N, [0.6] * N), "partly supported"),  # only the graded metric moves
        (([1.0] * 40 + [0.0] * 60, [0.8] * N), ([0.0] * N, [0.4] * N), "contradicted"),
        (([0.0] * N, [0.5] * N), ([0.0] * N, [0.5] * N), "not shown"),
        (([1.0] * 10 + [0.0] * 90, [0.5] * N), ([1.0] * 12 + [0.0] * 88, [0.5] * N), "not shown"),  # within noise
    ],
)
def test_trend_verdict(small, large, status):
    v = trend_verdict(TASK, [(250, _ev(*small)), (500, _ev([0.0] * N, [0.0] * N)), (1000, _ev(*large))], "data.n_train")
    assert v.status == status, v.text
    assert "data.n_train 250 → 1000" in v.text and "exact_match at each data.n_train: 250 " in v.text
    assert "500 0.000" in v.text  # the dip in between is shown, not hidden by first-vs-last


def test_spread_verdict_ranks_on_the_graded_metric_when_the_primary_cannot():
    points = [("plain", _ev([0.0] * N, [0.3] * N)), ("chat", _ev([0.0] * N, [0.7] * N)), ("instruction", _ev([0.0] * N, [0.5] * N))]
    v = spread_verdict(TASK, points, "data.format")
    assert v.status == "partly supported"
    assert "on element_accuracy, best chat (0.700), worst plain (0.300)" in v.text
    same = spread_verdict(TASK, [("a", _ev([0.0] * N, [0.3] * N)), ("b", _ev([0.0] * N, [0.3] * N))], "x")
    assert same.status == "not shown"
    # The primary metric differs by noise (2 vs 1 exact of 100), the graded one clearly.
    near_zero = [("smollm2", _ev([1.0] * 2 + [0.0] * 98, [0.35] * N)), ("gemma3", _ev([1.0] + [0.0] * 99, [0.20] * N))]
    v = spread_verdict(TASK, near_zero, "base_model.name")
    assert v.status == "partly supported", v.text
    assert "on element_accuracy, best smollm2 (0.350), worst gemma3 (0.200)" in v.text
    assert "exact_match does not separate them beyond noise (on exact_match, best smollm2 (0.020)" in v.text
    clear = [("a", _ev([1.0] * 40 + [0.0] * 60, [0.5] * N)), ("b", _ev([0.0] * N, [0.5] * N))]
    assert spread_verdict(TASK, clear, "x").status == "supported"


def test_a_resumed_runs_train_seconds_are_marked():
    fresh = RunEvidence("a" * 32, TASK, {"metrics.train_runtime": 903.4}, [])
    resumed = RunEvidence("b" * 32, TASK, {"metrics.train_runtime": 210.0, f"tags.{RESUMED_TAG}": "100,300"}, [])
    v = spread_verdict(TASK, [("plain", _ev([0.0] * N, [0.3] * N)), ("chat", _ev([0.0] * N, [0.7] * N))], "data.format")
    assert "Train s: plain –, chat –." in v.text  # no row: no seconds, not a made-up number
    assert train_seconds(fresh) == "903" and train_seconds(resumed) == "210 (after resume at step 300)"


def test_quality_against_time_places_each_epoch_at_its_share_of_the_runs_hours(tmp_path):
    from types import SimpleNamespace

    from seqtune.experiments.report import Section, _hours_block

    fast = _ev([0.0] * 50 + [1.0] * 50, [0.7] * N, run_id="f" * 32)
    fast.row = {"metrics.train_runtime": 1800.0, "params.bf16": "True", "metrics.train_tokens_per_s": 300.0}
    fast.history = {"val_exact_match": {1: 0.1, 2: 0.4}, "val_element_accuracy": {1: 0.5, 2: 0.7}}
    slow = _ev([0.0] * 80 + [1.0] * 20, [0.5] * N, run_id="s" * 32)
    slow.row = {"metrics.train_runtime": 7200.0, "params.bf16": "False"}
    slow.history = {"val_exact_match": {1: 0.05, 2: 0.2}}
    two_epochs = SimpleNamespace(train=SimpleNamespace(epochs=2, val_size=64))
    sec = Section("by_time", "More time helps.")
    _hours_block(TASK, [("long", slow, two_epochs), ("short", fast, two_epochs)], sec, tmp_path)
    rows = [ln for ln in sec.lines if ln.startswith("| short") or ln.startswith("| long")]
    # Fewer training seconds first, whatever the point order; epoch e of 2 at e/2 of the hours.
    assert rows[0].startswith("| short | `ffffffff` | bf16 | 1800 | 300 | 0.500 ± 0.050")
    assert "0.100 (0.25 h), 0.400 (0.50 h)" in rows[0] and "0.050 (1.00 h), 0.200 (2.00 h)" in rows[1]
    assert (tmp_path / f"by_time_{TASK}.png").stat().st_size > 5000
    # More hours bought less here: the verdict says so, between the shortest and longest run.
    assert sec.verdicts[-1].status == "contradicted" and "training time 0.50 h → 2.00 h" in sec.verdicts[-1].text


def test_verified_verdict_needs_a_lift_and_a_flag_that_is_never_wrong():
    from seqtune.experiments.verdicts import verified_verdict
    from seqtune.pipeline.eval_keys import GREEDY

    def ev(right: list[int], greedy_right: list[int], verified: list[bool]) -> RunEvidence:
        e = RunEvidence("v" * 32, "smiles2iupac", None,
                        [{"structure_match": float(r), "verified": v} for r, v in zip(right, verified)])
        e.baselines[GREEDY] = [{"structure_match": float(g)} for g in greedy_right]
        return e

    # 40 greedy right, 60 right with beams, each of the 60 flagged: lift, precision 1.0.
    good = verified_verdict("smiles2iupac", ev([1] * 60 + [0] * 40, [1] * 40 + [0] * 60, [True] * 60 + [False] * 40))
    assert good.status == "supported" and "0.400 → 0.600" in good.text and "on 60 of 100 items, of which 1.000" in good.text
    # The same lift, but one flagged answer is wrong: the flag's promise is broken.
    bad = verified_verdict("smiles2iupac", ev([1] * 60 + [0] * 40, [1] * 40 + [0] * 60, [True] * 61 + [False] * 39))
    assert bad.status == "contradicted" and "0.984 are right" in bad.text
    same = verified_verdict("smiles2iupac", ev([1] * 40 + [0] * 60, [1] * 40 + [0] * 60, [True] * 40 + [False] * 60))
    assert same.status == "not shown"
    # A run whose greedy pass was timed states the cost of the beams beside their lift.
    assert "Cost" not in good.text
    timed = ev([1] * 60 + [0] * 40, [1] * 40 + [0] * 60, [True] * 60 + [False] * 40)
    timed.row = {"metrics.eval.items_per_s": 2.0, "metrics.eval.greedy.items_per_s": 7.0, "metrics.eval.batch_size": 32.0}
    assert "Cost: 3.5× greedy's decoding time (2.00 vs 7.00 items/s, batch 32)" in verified_verdict("smiles2iupac", timed).text


def test_claim_verdict_tests_the_claimed_direction_not_only_that_x_matters():
    from seqtune.experiments.verdicts import claim_verdict

    plain = _ev([1.0] * 30 + [0.0] * 70, [0.5] * 100)
    # The claimed winner loses on the primary metric while the graded one rises (the measured
    # atoms-format case): contradicted, and the text still names the graded rise.
    atoms = _ev([1.0] * 15 + [0.0] * 85, [0.7] * 100)
    lost = claim_verdict(TASK, [("plain", plain), ("atoms", atoms)], "data.format", "atoms")
    assert lost.status == "contradicted" and "atoms loses" in lost.text and "element_accuracy rises" in lost.text
    # The same two runs, the claim the other way round: supported.
    assert claim_verdict(TASK, [("plain", plain), ("atoms", atoms)], "data.format", "plain").status == "supported"
    # Same exact matches, better graded: only partly.
    graded_only = _ev([1.0] * 30 + [0.0] * 70, [0.7] * 100)
    assert claim_verdict(TASK, [("plain", plain), ("atoms", graded_only)], "data.format", "atoms").status == "partly supported"
    # The winner must beat every other point: ties with one of them is not a win.
    assert claim_verdict(TASK, [("plain", plain), ("chat", atoms), ("atoms", plain)], "data.format", "atoms").status == "not shown"
    # Where the primary metric separates two points, the graded one does not overrule it:
    # beating chat on exact match while worse on its graded metric is still a win over chat.
    assert claim_verdict(TASK, [("chat", atoms), ("plain", plain)], "data.format", "plain").status == "supported"
    # Where it does not separate them, a graded loss contradicts the claim.
    worse_graded = _ev([1.0] * 30 + [0.0] * 70, [0.3] * 100)
    tied = claim_verdict(TASK, [("plain", plain), ("atoms", worse_graded)], "data.format", "atoms")
    assert tied.status == "contradicted" and "graded metric to plain" in tied.text


def test_a_claimed_winner_must_be_one_of_the_points(tmp_path):
    from seqtune.experiments.sweeps import load_sweeps

    bad = tmp_path / "sweeps.yaml"
    bad.write_text("sweeps:\n  f:\n    finding: x\n    x: data.format\n    expect: atom\n"
                   "    points: [{data.format: plain}, {data.format: atoms}]\n")
    with pytest.raises(ConfigError, match="expect 'atom' is not one of"):
        load_sweeps(bad, REPO / "params.yaml")


def _curve(values: list[float], graded: list[float] | None = None, label: str = "run") -> EpochCurve:
    history = {"val_exact_match": dict(enumerate(values, start=1)),
               "val_element_accuracy": dict(enumerate(graded or values, start=1))}
    return EpochCurve(label, RunEvidence("c" * 32, TASK, None, [], history=history), n_val=200)


def _rise_then_flat(k: int, epochs: int = 30, top: float = 0.6) -> list[float]:
    """Rises linearly to `top` at epoch k, then stays there."""
    return [top * min(e, k) / k for e in range(1, epochs + 1)]


def test_plateau_epoch_is_where_the_curve_comes_within_noise_of_its_best():
    curve = dict(enumerate(_rise_then_flat(20), start=1))
    k, best = plateau_epoch(curve, 200)
    # 2 SE at 0.6 over 200 items is 0.069: from 0.54 (epoch 18) the curve is within noise.
    assert best == 20 and k == 18
    k, best = plateau_epoch({1: 0.1, 2: 0.5, 3: 0.2}, 200)  # a peak, then a fall
    assert (k, best) == (2, 2)


@pytest.mark.parametrize(
    ("values", "status", "says"),
    [
        (_rise_then_flat(22), "supported", "Returns flatten from epoch 20 on exact_match, as the method reports"),
        (_rise_then_flat(6), "partly supported", "returns flatten from epoch 6 on exact_match, earlier than the method's"),
        ([0.02 * e for e in range(1, 31)], "partly supported", "exact_match is still rising at epoch 30"),
        # Overfitting: first to last is flat, but the peak and the fall are said, not hidden.
        (_rise_then_flat(8)[:10] + [0.1] * 20, "partly supported",
         "help until epoch 8 (exact_match 0.600), then hurt: 0.100 at epoch 30"),
        ([0.5 - 0.01 * e for e in range(1, 31)], "contradicted", "exact_match epoch 1 → 30: 0.490 → 0.200"),
    ],
)
def test_epoch_verdict_on_a_long_run(values, status, says):
    v = epoch_verdict(TASK, [_curve(values, label="250 examples, 30 epochs")])
    assert v.status == status, v.text
    assert says in v.text and "250 examples, 30 epochs (run `cccccccc`)" in v.text


def test_epoch_verdict_on_a_short_run_says_flattening_cannot_show():
    v = epoch_verdict(TASK, [_curve([0.0, 0.02, 0.05, 0.08, 0.1, 0.11])])
    assert v.status == "supported" and "cannot show in 6 epochs" in v.text
    # The primary metric flat at zero, the graded one rising: only partly.
    v = epoch_verdict(TASK, [_curve([0.0] * 30, _rise_then_flat(25, top=0.8))])
    assert v.status == "partly supported" and "on element_accuracy" in v.text


def test_size_bins_split_the_items_evenly_and_cover_them():
    sizes = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15]
    bins = size_bins(sizes, 4)
    assert bins[0][0] == 5 and bins[-1][1] == 15
    assert all(lo <= hi for lo, hi in bins) and all(b[1] + 1 == n[0] for b, n in zip(bins, bins[1:]))
    assert size_bins([9] * 20, 4) == [(9, 9)]  # one size: one bin


def test_model_params_from_names_and_measurements():
    assert model_params("facebook/opt-1.3b") == 1.3e9 and model_params("EleutherAI/pythia-410m") == 410e6
    assert model_params("smollm2-135m") == 135e6 and model_params("smollm2-135m", {"smollm2-135m": 134515008}) == 134515008
    assert model_params("tiny") is None


# ---------------------------------------------------------------------------------------
# the report from real tiny runs

COMMON = {
    "tasks": [TASK],
    "molecules": {"source": "rdkit-samples", "max_raw": 300, "max_heavy_atoms": 18, "workers": 1},
    "data": {"n_train": 32, "n_test": 12, "workers": 1, "chunk_size": 64, "format": "instruction"},
    "base_model": {"name": "tiny"},
    "train": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "max_length": 512, "logging_steps": 1,
              "save_steps": 1000, "val_size": 8},
    "evaluate": {"n_eval": 8, "batch_size": 8, "max_new_tokens": 12},
}
SWEEPS = {
    "common": {"tasks": [TASK]},
    "sweeps": {
        "specialist": {"finding": "Fine-tuning makes a specialist.", "x": "baseline", "points": [{}]},
        "epochs": {"finding": "More epochs help.", "x": "epoch", "points": [{}]},
        "data_size": {"finding": "More examples help.", "x": "data.n_train",
                      "points": [{"data.n_train": 16}, {"data.n_train": 32}]},
        "format": {"finding": "Formatting is decisive.", "x": "data.format",
                   "points": [{"data.format": "instruction"}, {"data.format": "plain"}]},
        "time": {"finding": "More training time helps.", "x": "train_hours",
                 "points": [{"data.n_train": 32}, {"data.n_train": 16}, {"data.n_train": 64}]},
    },
}


def _run_pipeline(params) -> str:
    """molecules -> data -> train -> evaluate for params; returns the training run id."""
    from seqtune import paths
    from seqtune.pipeline import data, evaluate, train

    data.main(TASK, params=params)
    train.main(TASK, params=params)
    evaluate.main(TASK, params=params)
    return (paths.model_dir(TASK) / "run_id").read_text().strip()


@pytest.fixture
def project(tmp_path, monkeypatch, params_file):
    from seqtune.pipeline import base_model, molecules

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = params_file(COMMON)
    molecules.main(params=params)
    base_model.main(params=params)
    (tmp_path / "sweeps.yaml").write_text(yaml.safe_dump(SWEEPS))
    return tmp_path, params


def _write(path, overrides):
    """A copy of params file `path` with dotted-key overrides, beside it."""
    from seqtune.experiments.sweeps import apply_overrides

    out = path.with_name("params-" + "-".join(f"{k}={v}" for k, v in overrides.items()) + ".yaml")
    out.write_text(yaml.safe_dump(apply_overrides(yaml.safe_load(path.read_text()), overrides), sort_keys=False))
    return out


def test_report_from_real_runs(project, monkeypatch, empty_mlflow_db):
    import shutil

    from seqtune.experiments import report
    from seqtune.experiments.cost import cost_section
    from seqtune.experiments.runs import collect_runs
    from seqtune.experiments.sweeps import plan

    root, params = project
    big = _run_pipeline(params)                                # n_train 32: also the reference point
    small = _run_pipeline(_write(params, {"data.n_train": 16}))
    md = report.main(params=params, sweeps_path=root / "sweeps.yaml", out=root / "reports").read_text()

    # Every table row names its run; the data-size table has both points, in x order.
    rows = re.findall(r"^\| (16|32) \| `([0-9a-f]{8})` \|", md, re.M)
    assert rows == [("16", small[:8]), ("32", big[:8])], md
    # The sweeps' verdicts are in the summary, one per sweep and task.
    summary = md.split("## What was run")[0]
    for name in ("specialist", "epochs", "data_size", "format", "time"):
        assert re.search(rf"^\| \[{name}\]\(#{name}\) \| .* \| {TASK} \| \*\*(supported|partly supported|contradicted|not shown|not run)\*\* \|",
                         summary, re.M), name
    assert "data.n_train 16 → 32" in md
    # Baselines scored on the same items: RDKit's rule is always right.
    assert re.search(r"^\| rule-based tool \| 1\.000 ± 0\.000 \|", md, re.M)
    assert re.search(r"^\| zero-shot base model \|", md, re.M)
    # Per-epoch metrics of the reference run: both epochs.
    assert re.search(r"^\| 1 \| [0-9.]+ \|", md, re.M) and re.search(r"^\| 2 \| [0-9.]+ \|", md, re.M)
    # Format: the instruction point is the reference run; plain is not run yet.
    assert "Not run yet: data.format = plain" in md and "**not run**: only data.format = instruction has a run" in md
    # Quality against time: the runs in order of their training seconds (the 16-example run
    # usually trained for less time), each at its own hours; the unrun point is named.
    time_rows = re.findall(r"^\| n_train=(16|32) \| `([0-9a-f]{8})` \| (fp32|bf16) \| (\d+) \|", md, re.M)
    assert sorted(r[:2] for r in time_rows) == [("16", small[:8]), ("32", big[:8])], md
    assert int(time_rows[0][3]) <= int(time_rows[1][3])
    assert "Not run yet: n_train=64" in md and "training time " in md.split("## What was run")[0]
    for png in ("data_size_smiles2formula.png", "data_size_smiles2formula_by_size.png", "epochs_smiles2formula.png",
                "format_smiles2formula.png", "time_smiles2formula.png"):
        assert (root / "reports" / png).stat().st_size > 5000, png
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (root / "reports" / link).exists(), link

    # Re-running after a new run regenerates the report with it.
    plain = _run_pipeline(_write(params, {"data.format": "plain"}))
    md = report.main(params=params, sweeps_path=root / "sweeps.yaml", out=root / "reports").read_text()
    assert "Not run yet: data.format" not in md and f"| plain | `{plain[:8]}` |" in md
    full = md

    # A run is a point only when its whole configuration matches: with another learning
    # rate in params.yaml, none of these runs is any point (matching on the overrides alone
    # would have taken them).
    other = _write(params, {"train.learning_rate": 0.02})
    md = report.main(params=other, sweeps_path=root / "sweeps.yaml", out=root / "other").read_text()
    assert big[:8] not in md and small[:8] not in md and "no matching run yet" in md

    # The cost estimate counts tokens per example on a sample of the points' own data ...
    paper = root / "paper.yaml"
    paper.write_text(yaml.safe_dump({"common": {"tasks": [TASK], "data.format": "instruction"},
                                     "sweeps": {"size": {"finding": "f", "x": "data.n_train",
                                                         "points": [{"data.n_train": 10000}, {"data.n_train": 100000}]}}}))
    lines = cost_section(paper, params=params, runs=collect_runs(params))
    table = [ln for ln in lines if ln.startswith("| size[")]
    assert len(table) == 2 and all(ln.split(" | ")[5].endswith("(s1)") for ln in table), table
    assert any(ln.startswith("- *s1*:") and "rdkit-samples" in ln for ln in lines)
    tokens = [float(ln.split(" | ")[6]) for ln in table]
    assert tokens[1] == pytest.approx(10 * tokens[0])  # 10x the examples, 10x the tokens
    # ... and without one (`--sample 0`, or no sample possible) takes them from these runs.
    lines = cost_section(paper, params=params, runs=collect_runs(params), sample=0)
    table = [ln for ln in lines if ln.startswith("| size[")]
    assert len(table) == 2 and f"(`{small[:8]}`)" in table[0]  # the newest run in this format
    tokens = [float(ln.split(" | ")[6]) for ln in table]
    assert tokens[1] == pytest.approx(10 * tokens[0])

    # The report recorded every run it used; from the records alone (a fresh clone, no MLflow
    # store) it regenerates the same findings, and the sweeps count those runs as done.
    records = root / "reports" / "runs"
    assert sorted(p.name for p in records.glob("*.json")) == sorted(f"{TASK}-{r}.json" for r in (big, small, plain))
    fresh = root / "fresh" / "mlflow.db"
    fresh.parent.mkdir()
    shutil.copy(empty_mlflow_db, fresh)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh}")
    assert collect_runs(params).empty
    again = report.main(params=params, sweeps_path=root / "sweeps.yaml", out=root / "again").read_text()
    assert "the run records in `reports/runs/` (3)" in again
    assert again.split("## Summary")[1] == full.split("## Summary")[1]
    assert all(not exp.tasks for exp in plan(["data_size", "format"], sweeps_path=root / "sweeps.yaml", params=params,
                                              runs=collect_runs(params, records)))


def test_a_run_older_than_a_key_matches_that_keys_default_only():
    """A committed run record predates `molecules.max_record_chars`: it ran as the default
    does, so it must still match a point at the default (it did not: the specialist report
    lost its smiles2iupac run) and never a point that sets the key to something else."""
    import pandas as pd

    from seqtune.config import Params
    from seqtune.experiments.runs import match_run, signature

    p = Params(tasks=["smiles2formula"], evaluate={"decoding": "greedy"})  # as smiles2formula decodes
    sig = signature(p)
    row = {**sig, "tags.seqtune.task": "smiles2formula", "metrics.eval.exact_match": 0.25}
    del row["params.molecules.max_record_chars"]
    runs = pd.DataFrame([row])
    assert match_run(runs, sig, "smiles2formula") is not None
    other = signature(Params(tasks=["smiles2formula"], evaluate={"decoding": "greedy"}, molecules={"max_record_chars": 500}))
    assert match_run(runs, other, "smiles2formula") is None
    # a key the run did log still decides: another learning rate is another run
    lr = signature(Params(tasks=["smiles2formula"], train={"learning_rate": 1e-4}))
    assert match_run(runs, lr, "smiles2formula") is None
    # A greedy-scored formula run is what a `verified` point gets (verified is not fair for
    # smiles2formula: it ran greedy and was tagged so); for smiles2iupac verified is another run.
    verified = signature(Params(tasks=["smiles2formula"], evaluate={"decoding": "verified"}))
    assert match_run(runs, verified, "smiles2formula") is not None
    iupac = pd.DataFrame([{**row, "tags.seqtune.task": "smiles2iupac", "metrics.eval.structure_match": 0.2}])
    assert match_run(iupac, sig, "smiles2iupac") is not None
    assert match_run(iupac, verified, "smiles2iupac") is None
    # evaluation tags are not defaulted: a run evaluated with unknown settings never matches
    del row["tags.evaluate.decoding"]
    assert match_run(pd.DataFrame([row]), sig, "smiles2formula") is None


@pytest.mark.parametrize(("sweeps_file", "report"), [("sweeps/quick.yaml", "reports/quick"),
                                                     ("sweeps/specialist.yaml", "reports/specialist"),
                                                     ("sweeps/default.yaml", "reports/default")])
def test_committed_reports_keep_their_run_records(sweeps_file, report):
    """A params.yaml default that changes must not orphan a committed report's runs: every
    sweep the committed report shows results for still finds a run record for each point that
    has one. (The quick report silently lost all six of its sweeps when params.yaml's default
    batch size went 16 -> 32; its sweep file now pins what those runs trained with.)"""
    from seqtune.experiments.runs import collect_runs, match_run, signature
    from seqtune.experiments.sweeps import load_sweeps, point_params

    params = REPO / "params.yaml"
    runs = collect_runs(params, records=REPO / "reports" / "runs")
    sweeps = load_sweeps(REPO / sweeps_file, params)
    raw = yaml.safe_load(params.read_text())
    summary = (REPO / report / "findings.md").read_text().split("## Summary")[1].split("\n## ")[0]
    shown = {m.group(1) for m in re.finditer(r"^\| \[(\w+)\]\(#\w+\) \|.*\| \*\*(?!not run)", summary, re.M)}
    assert shown, f"{report}/findings.md shows no sweep results"
    for name in shown:
        found = [match_run(runs, signature(p), t) is not None
                 for i in range(len(sweeps.sweeps[name].points))
                 for p in [point_params(sweeps, name, i, raw)] for t in p.tasks]
        assert any(found), f"{sweeps_file}: sweep {name} no longer matches any run record ({report} shows results for it)"


def test_real_molecule_bands_are_reported_in_size_order_with_their_error():
    from seqtune.experiments.evidence import RunEvidence
    from seqtune.experiments.report import Section, _real_block

    row = {"metrics.eval.real.13-15.n": 40.0, "metrics.eval.real.13-15.structure_match": 0.1,
           "metrics.eval.real.13-15.verified_rate": 0.05,
           "metrics.eval.real.3-12.n": 50.0, "metrics.eval.real.3-12.structure_match": 0.5,
           "metrics.eval.real.3-12.verified_rate": 0.4, "metrics.eval.structure_match": 0.7}
    sec = Section("s", "f", [])
    _real_block("smiles2iupac", RunEvidence("r" * 32, "smiles2iupac", row, []), sec)
    table = [ln for ln in sec.lines if ln.startswith("| ") and ln[2].isdigit()]
    assert table == ["| 3-12 | 50 | 0.500 ± 0.071 | 0.400 |", "| 13-15 | 40 | 0.100 ± 0.047 | 0.050 |"]
    empty = Section("s", "f", [])
    _real_block("smiles2iupac", RunEvidence("r" * 32, "smiles2iupac", {"metrics.eval.structure_match": 0.7}, []), empty)
    assert empty.lines == []  # a run from before the real-molecule stage shows no table
