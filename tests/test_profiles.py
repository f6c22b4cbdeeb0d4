"""The `specialist` profile: `make specialist` runs exactly the configurations that
sweeps/specialist.yaml reports on (else `seqtune report` would find no run for them).

    .venv/bin/python -m pytest -q tests/test_profiles.py
"""

from __future__ import annotations

import re
import shlex
import subprocess

from tests.conftest import REPO

from seqtune.experiments.sweeps import plan


def _overrides(cmd: list[str]) -> dict[str, str]:
    sets = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-S"]
    return dict(s.split("=", 1) for s in sets)


def test_make_specialist_runs_the_sweep_files_configurations():
    dry = subprocess.run(["make", "-n", "-s", "specialist"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    runs = [shlex.split(part) for part in re.split(r"&&", dry) if "dvc exp run" in part]
    made = {}
    for o in map(_overrides, (r[r.index("dvc"):] for r in runs)):
        made[o.pop("tasks")] = o
    # The plan runs tasks of one configuration together: compare per task.
    planned = {}
    for exp in plan(["smiles2iupac_vs_baselines", "smiles2formula_vs_baselines", "iupac2smiles_vs_baselines"],
                    sweeps_path=REPO / "sweeps/specialist.yaml", params=REPO / "params.yaml"):
        o = _overrides(exp.command())
        o.pop("tasks")
        planned |= {f"[{t}]": o for t in exp.tasks}
    assert set(made) == {"[smiles2iupac]", "[smiles2formula]", "[iupac2smiles]"}
    assert made == planned
