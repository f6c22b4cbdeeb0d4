"""Task plug-ins: the only part of seqtune that knows the tasks' chemistry (labels, scores).

    python -c "from seqtune.tasks import get_task; print(get_task('smiles2formula'))"

A task turns standardised molecules into (source, target) pairs, scores predictions and may
offer a rule-based baseline; see `base.Task`. General RDKit/OPSIN helpers live below the
tasks, in `seqtune.chem`. Modules are imported lazily so that reading the
task list (config validation, the CLI) does not pay for RDKit or OPSIN.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seqtune.tasks.base import Task

# name -> "module:Class"; adding a task = one module + one line here.
_REGISTRY: dict[str, str] = {
    "smiles2iupac": "seqtune.tasks.smiles2iupac:Smiles2Iupac",
    "smiles2formula": "seqtune.tasks.smiles2formula:Smiles2Formula",
    "iupac2smiles": "seqtune.tasks.iupac2smiles:Iupac2Smiles",
}
TASK_NAMES: tuple[str, ...] = tuple(_REGISTRY)

_instances: dict[str, Task] = {}


def get_task(name: str) -> Task:
    """Return the (cached) task instance called `name`."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    if name not in _instances:
        module, cls = _REGISTRY[name].split(":")
        _instances[name] = getattr(import_module(module), cls)()
    return _instances[name]
