"""Experiment sweeps (sweeps/*.yaml): validated definitions queued as DVC experiments.

    seqtune sweep queue data_size format      # or `all`; then: dvc queue start -j 1

Each point of a sweep is a set of params.yaml overrides (`common`, then the sweep's `set`,
then the point's own keys). Every point is validated against the params schema before
anything is queued, so a typo fails here rather than an hour into a queue. Points run as
`dvc exp run --queue -n <sweep>-<i>-<config hash> -S key=value ...`, which DVC and MLflow
both track. Sweeps usually share a reference point (the data-size sweep's middle point is
the format sweep's `plain` point, say): a configuration is queued once, and not at all when
the MLflow store or a run record already holds a run of it (`seqtune.experiments.runs`), so
re-queueing after adding a point runs only the new one.
"""

from __future__ import annotations

import copy
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seqtune.config import DEFAULT_PARAMS, ConfigError, Params, parse_params, read_yaml
from seqtune.files import rows_sha256

log = logging.getLogger(__name__)

DEFAULT_SWEEPS = Path("sweeps/cpu.yaml")
"""The CPU-scale sweeps (`reports/findings.md`); sweeps/ holds the other profiles' files."""
SPECIAL_X = {
    "epoch": "the run's per-epoch generation metrics (train.val_size items)",
    "baseline": "the fine-tuned model against the zero-shot base model and the rule-based tool",
    "train_hours": "each point's run placed at its training time, its per-epoch validation metrics as a line",
}


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finding: str
    """The claim this sweep tests, in one sentence."""
    x: str
    """The params key that varies, or one of SPECIAL_X for a single run's own comparison."""
    note: str = ""
    """What a reader needs to read the results right (printed under the sweep's heading)."""
    set: dict[str, Any] = Field(default_factory=dict)
    """Overrides shared by every point of this sweep."""
    points: list[dict[str, Any]] = Field(min_length=1)
    expect: Any = None
    """For a categorical x: the value the claim says wins. The verdict then tests that
    direction (a claimed winner that loses is *contradicted*), not only that x matters."""


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    common: dict[str, Any] = Field(default_factory=dict)
    sweeps: dict[str, Sweep]


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the params dict `raw` with dotted-key `overrides` applied."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {p} is not a section")
        node[leaf] = value
    return out


def point_overrides(sweeps: SweepFile, name: str, index: int) -> dict[str, Any]:
    sweep = sweeps.sweeps[name]
    return {**sweeps.common, **sweep.set, **sweep.points[index]}


def shown(path: Path | str) -> str:
    """A sweep file as the report names it: a relative path as given (`sweeps/paper.yaml`, what
    a command run at the repository root takes), an absolute one by its file name."""
    path = Path(path)
    return path.name if path.is_absolute() else path.as_posix()


def load_sweeps(path: Path | str = DEFAULT_SWEEPS, params: Path | str = DEFAULT_PARAMS) -> SweepFile:
    """Parse a sweep file and validate every point against params.yaml's schema."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found")
    try:
        sweeps = SweepFile.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: invalid sweeps file: {e}") from None
    raw = read_yaml(params)
    for name, sweep in sweeps.sweeps.items():
        for i in range(len(sweep.points)):
            parse_params(apply_overrides(raw, point_overrides(sweeps, name, i)), f"{path} sweep {name} point {i}")
        if sweep.x not in SPECIAL_X and not all(sweep.x in p for p in sweep.points):
            raise ConfigError(f"{path}: sweep {name}: every point must set its x key {sweep.x!r}")
        if sweep.expect is not None and sweep.expect not in [p.get(sweep.x) for p in sweep.points]:
            raise ConfigError(f"{path}: sweep {name}: expect {sweep.expect!r} is not one of its points' {sweep.x} values")
    return sweeps


def point_params(sweeps: SweepFile, name: str, index: int, raw: dict[str, Any]) -> Params:
    """The whole configuration of one point: params.yaml (`raw`) with its overrides."""
    return parse_params(apply_overrides(raw, point_overrides(sweeps, name, index)), f"sweep {name} point {index}")


@dataclass
class Experiment:
    """One `dvc exp run`: the points of one configuration, for the tasks not yet run."""

    name: str
    overrides: dict[str, Any]
    tasks: list[str]
    points: list[str] = field(default_factory=list)
    """`sweep[i]` of every point this experiment runs."""
    done: dict[str, str] = field(default_factory=dict)
    """task -> id of the MLflow run that already ran this configuration."""

    def command(self) -> list[str]:
        cmd = ["dvc", "exp", "run", "--queue", "-n", self.name]
        for k, v in {**self.overrides, "tasks": self.tasks}.items():
            cmd += ["-S", f"{k}={_hydra_value(v)}"]
        return cmd


def plan(names: Sequence[str], *, sweeps_path: Path | str = DEFAULT_SWEEPS, params: Path | str = DEFAULT_PARAMS,
         runs=None, rerun: bool = False) -> list[Experiment]:
    """The experiments that run sweeps `names`: points of the same configuration are one
    experiment (sweeps share their reference point), and with `runs` (`collect_runs()`),
    tasks that already have a matching run are left out unless `rerun`."""
    from seqtune.experiments.runs import match_run, signature

    sweeps = load_sweeps(sweeps_path, params)
    unknown = [n for n in names if n not in sweeps.sweeps]
    if unknown or not names:
        raise ConfigError(f"no sweep {', '.join(map(repr, unknown)) or 'named'} in {sweeps_path}; defined: {', '.join(sweeps.sweeps)}")
    raw = read_yaml(params)
    by_config: dict[str, Experiment] = {}
    for name in names:
        for i in range(len(sweeps.sweeps[name].points)):
            p = point_params(sweeps, name, i, raw)
            sig = signature(p)
            key = rows_sha256([sorted(sig.items())])
            exp = by_config.setdefault(key, Experiment(f"{name}-{i}-{key[:6]}", point_overrides(sweeps, name, i), []))
            exp.points.append(f"{name}[{i}]")
            exp.tasks += [t for t in p.tasks if t not in exp.tasks]
            for task in p.tasks:
                if runs is not None and not rerun and task not in exp.done and (row := match_run(runs, sig, task)) is not None:
                    exp.done[task] = row.run_id
    for exp in by_config.values():
        exp.tasks = [t for t in exp.tasks if t not in exp.done]
    return list(by_config.values())


def _hydra_value(value: Any) -> str:
    """Render a value for DVC's `-S key=value` (Hydra override syntax)."""
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _config_key(name: str) -> str:
    """The configuration hash an experiment's name ends with (`<sweep>-<i>-<hash>`)."""
    return name.rsplit("-", 1)[-1]


# `dvc exp run --queue` only stashes the workspace and the overrides (seconds): a longer wait is
# a hung dvc (e.g. a lock that is never released), which raises subprocess.TimeoutExpired.
QUEUE_TIMEOUT_S = 600


def pending_experiments() -> dict[str, str]:
    """Name -> status of the experiments waiting in or running from the DVC queue (the name
    carries the configuration's hash, so it identifies the configuration)."""
    try:
        res = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_queue_status(res.stdout)


def parse_queue_status(text: str) -> dict[str, str]:
    """`dvc queue status` output -> {name: status} of its Queued and Running rows."""
    out = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[-1] in ("Queued", "Running"):
            out[cells[1]] = cells[-1]
    return out


def queue(names: Sequence[str], *, sweeps_path: Path | str = DEFAULT_SWEEPS, params: Path | str = DEFAULT_PARAMS,
          rerun: bool = False, dry_run: bool = False, records: Path | str | None = None) -> list[Experiment]:
    """Queue the experiments of sweeps `names` (`dvc exp run --queue`), skipping
    configurations already run (in the MLflow store, or in the run records `records`);
    returns the plan (skipped ones have no tasks left)."""
    from seqtune.experiments.runs import collect_runs

    experiments = plan(names, sweeps_path=sweeps_path, params=params, runs=collect_runs(params, records), rerun=rerun)
    pending = pending_experiments()
    queued = 0
    for exp in experiments:
        covers = ", ".join(exp.points)
        if exp.done:
            log.info("%s: already run (%s)", covers, ", ".join(f"{t}: {r[:8]}" for t, r in exp.done.items()))
        if not exp.tasks:
            continue
        # By configuration, not by name: a sweep queued earlier may have named it after another point.
        waiting = next((n for n in pending if _config_key(n) == _config_key(exp.name)), None)
        if waiting and not rerun:
            log.info("%s: already in the DVC queue as %s (%s)", covers, waiting, pending[waiting])
            continue
        cmd = exp.command()
        log.info("%s: %s", covers, " ".join(cmd))
        if not dry_run:
            subprocess.run(cmd, check=True, timeout=QUEUE_TIMEOUT_S)
        queued += 1
    if queued and not dry_run:
        log.info("queued %d experiments: run them with `dvc queue start -j 1`", queued)
    elif not queued:
        log.info("nothing new to queue: every point has a matching run or waits in the DVC queue (--rerun queues them again)")
    return experiments
