"""One registry operation in its own process, started on a signal, for the contention tests.

    python -m tests.registry_worker GO_FILE PARAMS OP [ARGS...]

OP is `register MODEL_DIR METRICS_JSON`, `promote VERSION [--force]` or `rollback`. The
process imports everything first, then waits for GO_FILE to exist, so that all workers hit
the store at the same moment rather than staggered by their import times. It prints one JSON
line (what the operation returned, or the error) and exits 0, or 3 when the operation refused
(a worse promote, nothing to roll back) — refusals are expected outcomes of a race.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from seqtune.pipeline import registry
from seqtune.pipeline.registry_lock import RegistryBusyError


def main(argv: list[str]) -> int:
    go, params, op, *args = argv
    deadline = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > deadline:
            print(json.dumps({"op": op, "error": "no go signal"}))
            return 4
        time.sleep(0.01)
    try:
        if op == "register":
            res = registry.register_model("smiles2formula", Path(args[0]), json.loads(Path(args[1]).read_text()),
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
        print(json.dumps({"op": op, "args": args, "refused": str(e)}))
        return 3
    print(json.dumps({"op": op, "args": args, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
