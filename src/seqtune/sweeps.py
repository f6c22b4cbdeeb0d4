"""Experiment sweeps (sweeps.yaml): validated definitions queued as DVC experiments.

    seqtune sweep queue data_size     # then: dvc queue start -j 1

Each point of a sweep is a set of params.yaml overrides (`common`, then the sweep's `set`,
then the point's own keys). Every point is validated against the params schema before
anything is queued, so a typo fails here rather than an hour into a queue. Points run as
`dvc exp run --queue -n <sweep>-<i> -S key=value ...`, which DVC and MLflow both track.
"""

from __future__ import annotations

import copy
import logging
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seqtune.config import DEFAULT_PARAMS, ConfigError, parse_params, read_yaml

log = logging.getLogger(__name__)

DEFAULT_SWEEPS = Path("sweeps.yaml")


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finding: str
    """The claim this sweep tests, in one sentence."""
    x: str
    """The params key that varies (or `epoch` for per-epoch metrics of one run)."""
    set: dict[str, Any] = Field(default_factory=dict)
    """Overrides shared by every point of this sweep."""
    points: list[dict[str, Any]] = Field(min_length=1)


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


def load_sweeps(path: Path | str = DEFAULT_SWEEPS, params: Path | str = DEFAULT_PARAMS) -> SweepFile:
    """Parse sweeps.yaml and validate every point against params.yaml's schema."""
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
            try:
                parse_params(apply_overrides(raw, point_overrides(sweeps, name, i)), f"{path} sweep {name} point {i}")
            except ConfigError as e:
                raise ConfigError(str(e)) from None
        if sweep.x != "epoch" and not all(sweep.x in p for p in sweep.points):
            raise ConfigError(f"{path}: sweep {name}: every point must set its x key {sweep.x!r}")
    return sweeps


def _hydra_value(value: Any) -> str:
    """Render a value for DVC's `-S key=value` (Hydra override syntax)."""
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def queue_commands(name: str, *, sweeps_path: Path | str = DEFAULT_SWEEPS, params: Path | str = DEFAULT_PARAMS) -> list[list[str]]:
    sweeps = load_sweeps(sweeps_path, params)
    if name not in sweeps.sweeps:
        raise ConfigError(f"no sweep {name!r} in {sweeps_path}; defined: {', '.join(sweeps.sweeps)}")
    cmds = []
    for i in range(len(sweeps.sweeps[name].points)):
        cmd = ["dvc", "exp", "run", "--queue", "-n", f"{name}-{i}"]
        for k, v in point_overrides(sweeps, name, i).items():
            cmd += ["-S", f"{k}={_hydra_value(v)}"]
        cmds.append(cmd)
    return cmds


def queue(name: str, *, sweeps_path: Path | str = DEFAULT_SWEEPS, params: Path | str = DEFAULT_PARAMS, dry_run: bool = False) -> list[list[str]]:
    """Queue every point of sweep `name` as a DVC experiment; returns the commands."""
    cmds = queue_commands(name, sweeps_path=sweeps_path, params=params)
    for cmd in cmds:
        log.info("%s", " ".join(cmd))
        if not dry_run:
            subprocess.run(cmd, check=True)
    if not dry_run:
        log.info("queued %d experiments: run them with `dvc queue start -j 1`", len(cmds))
    return cmds
