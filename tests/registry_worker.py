"""One registry operation in its own process, started on a signal, for the contention tests.

    python -m tests.registry_worker GO_FILE PARAMS OP [ARGS...]

OP is `register MODEL_DIR METRICS_JSON`, `promote VERSION [--force]` or `rollback`. A
barrier: the process imports everything its operation will, says it is ready (an empty file,
`ready_file(GO_FILE, pid)`), then waits for GO_FILE, which the test creates only once every
worker is ready; so all workers hit the store at the same moment rather than staggered by
their import times (seconds apart on two busy cores). It prints one JSON line (what the
operation returned, or the error, with `ready` and `released`: when it said so and when it saw
GO_FILE) and exits 0, or 3 when the operation refused (a worse promote, nothing to roll back)
— refusals are expected outcomes of a race.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from seqtune.pipeline import register, registry
from seqtune.pipeline.registry_lock import RegistryBusyError

# Longer than the test waits for every worker to be ready (tests/test_registry_race.py), so a
# ready worker outlives the slowest import; a worker whose test died gives up after it.
GO_WAIT_S = 600


def ready_file(go: Path, pid: int) -> Path:
    """The file worker `pid` creates once it is ready for the go signal `go`."""
    return go.with_name(f"{go.name}.ready.{pid}")


def import_everything() -> None:
    """Import what the operations import lazily (mlflow and its pyfunc flavour, the model card's
    module with torch and transformers, the tasks with RDKit): an import left for the operation
    would stagger the workers again after the release."""
    import mlflow.pyfunc  # noqa: F401
    from mlflow import MlflowClient  # noqa: F401

    from seqtune.inference import loader  # noqa: F401
    from seqtune.pipeline import pyfunc  # noqa: F401
    from seqtune.tasks import get_task  # noqa: F401


def wait_for_go(go: Path) -> bool:
    """Until `go` exists (True), or GO_WAIT_S pass (False)."""
    deadline = time.monotonic() + GO_WAIT_S
    while not go.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)  # the release spread: a few ms, against operations of 100s of ms
    return True


def main(argv: list[str]) -> int:
    go, params, op, *args = argv
    import_everything()
    ready = time.time()  # wall clock: compared with the other workers' times
    ready_file(Path(go), os.getpid()).touch()
    if not wait_for_go(Path(go)):
        print(json.dumps({"op": op, "error": "no go signal"}))
        return 4
    released = time.time()
    try:
        if op == "register":
            res = register.register_model("smiles2formula", Path(args[0]), json.loads(Path(args[1]).read_text()),
                                          params=Path(params))
            out = {"version": res.version, "created": res.created, "promoted": res.promoted, "champion": res.champion}
        elif op == "promote":
            out = {"reason": registry.promote("smiles2formula", int(args[0]), force="--force" in args, params=params)}
        elif op == "rollback":
            out = {"version": registry.rollback("smiles2formula", params=params)}
        else:
            raise SystemExit(f"unknown op {op}")
    except RegistryBusyError:
        raise  # waiting too long is a failure, not a refusal
    except (ValueError, RuntimeError) as e:
        print(json.dumps({"op": op, "args": args, "ready": ready, "released": released, "refused": str(e)}))
        return 3
    print(json.dumps({"op": op, "args": args, "ready": ready, "released": released, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
