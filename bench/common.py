"""What more than one bench script uses: the one module bench scripts share code through.

    .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); from common import molecules; print(molecules(3, 0))"

bench/ is not a package: a script puts its own folder first on `sys.path` and imports
`common` (`sys.path.insert(0, str(Path(__file__).resolve().parent))`). A bench script
imports no other bench script, only this module and the data module `known_molecules.py`
(tests/test_architecture.py checks it); whatever two scripts need moves here. Imports of
seqtune, torch, transformers and httpx are inside the functions, so importing this module
costs a script nothing it does not use.

Every script ends with `write_result(name, figures, ...)`: reports/bench/<name>.json, the
schema of `seqtune.experiments.bench_results` (figures, command, CPU kind, load before and
after, date, commit, versions), from which docs/benchmarks.md's table is generated. The load
"before" is this module's import, the script's start. A timed comparison of variants runs
them in alternating rounds (`alternate`) and records each one's `spread`.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = REPO / "reports" / "bench"
_START = (time.perf_counter(), os.getloadavg())
"""When the script started (it imports this module first) and the load then: a result's
`seconds` and `load_average.before`."""

# ------------------------------------------------------------------------- the CPU's ceiling


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of the best of `reps` n x n matmuls in `dtype`: the ceiling a training step's
    matmuls could reach on these cores."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: oneDNN picks and caches its kernel
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ------------------------------------------------------------------------- models and molecules

FRAGMENTS = ["C", "CC", "O", "N", "c1ccccc1", "C(=O)O", "Cl", "F", "C(C)", "S", "C(=O)N", "OC", "c1ccncc1", "Br"]


def molecules(n: int, seed: int) -> list[str]:
    """`n` distinct random valid SMILES of varied size (RDKit canonical)."""
    from seqtune.chem import canonical_smiles

    rng, out = random.Random(seed), {}
    while len(out) < n:
        s = canonical_smiles("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(2, 10))))
        if s:
            out[s] = None
    return list(out)


def resolve_base(name: str, out: Path, *, card: bool = True) -> Path:
    """Base model `name` (smollm2-135m, gemma3-270m, tiny, a local path...) written into `out`
    as the base_model stage writes it (downloads cached in data/downloads), and with `card`
    its base_model.json beside it; returns `out`."""
    from seqtune.files import write_json
    from seqtune.pipeline.base_model import BASE_MODEL_CARD, resolve

    meta = resolve(name, out, downloads=REPO / "data" / "downloads")
    if card:
        write_json(out / BASE_MODEL_CARD, meta)
    return out


def base_model(name: str, cache: Path) -> Path:
    """A resolved base model folder: the project's data/base_model when it is `name`, else
    `name` resolved (with its card) into `cache`/base."""
    from seqtune.pipeline.base_model import BASE_MODEL_CARD

    project = REPO / "data" / "base_model"
    if (project / BASE_MODEL_CARD).exists() and json.loads((project / BASE_MODEL_CARD).read_text())["name"] == name:
        return project
    return resolve_base(name, cache / "base")


def answer_token_ids(model_dir: Path, tokenizer, train: Path | None = None) -> tuple[list[int], str]:
    """The model's answer vocabulary and where it came from: its seqtune.json, or for a model
    trained before cards recorded it, the tokens of `train`'s completions + EOS, computed as
    training computes them (`sft_data.answer_token_ids`)."""
    import pandas as pd

    from seqtune.pipeline.sft_data import answer_token_ids as from_rows, encode_batch

    card = json.loads((model_dir / "seqtune.json").read_text())
    if card.get("answer_token_ids"):
        return card["answer_token_ids"], "seqtune.json"
    if train is None or not train.exists():
        sys.exit(f"{model_dir}'s seqtune.json records no answer vocabulary: pass --train <its train.parquet>")
    df = pd.read_parquet(train, columns=["prompt", "completion"])
    return from_rows(encode_batch(tokenizer, df.prompt.tolist(), df.completion.tolist())), f"{train.name} completions + EOS"


def model_label(folder: Path | str) -> str:
    """A model folder as a result's config names it: its path (repository-relative) and what
    its card says it is (a base model's name; a fine-tuned one's task, base model and run)."""
    folder = Path(folder)
    rel = folder.resolve().relative_to(REPO) if folder.resolve().is_relative_to(REPO) else folder
    about = None
    for card, keys in (("base_model.json", ("name",)), ("seqtune.json", ("task", "base_model"))):
        try:
            meta = json.loads((folder / card).read_text())
        except (OSError, ValueError):
            continue
        about = ", ".join(str(meta[k]) for k in keys if meta.get(k))
        break
    run = folder / "run_id"
    if run.exists():
        about = ", ".join(x for x in (about, f"run {run.read_text().strip()[:8]}") if x)
    return f"{rel} ({about})" if about else str(rel)


# ------------------------------------------------------------------------- timing and results


def alternate(sides: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Each side's timings (s) over `repeats` rounds, the sides taking turns within a round
    (A, B, A, B, ...), so a burst of other work on the cores slows a round of each rather than
    one side; `sides` maps a name to a zero-argument function that does one timed unit of work."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, work in sides.items():
            t = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - t)
    return times


def spread(xs: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """A figure measured in several rounds: median, min, max (rounded to `digits` significant
    digits) and how many rounds."""
    if not xs:
        raise ValueError("no rounds to summarise")

    def r(x: float) -> float:
        return float(f"{x:.{digits}g}")

    return {"median": r(statistics.median(xs)), "min": r(min(xs)), "max": r(max(xs)), "runs": len(xs)}


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def commit() -> dict[str, str | bool | None]:
    """The checkout's short commit and whether tracked files outside reports/bench (which
    earlier results rewrite) differ from it; None where git cannot say."""
    sha = _git("rev-parse", "--short", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports/bench")
    return {"sha": sha.strip() if sha else None, "dirty": None if status is None else bool(status.strip())}


def cpu() -> dict:
    """The CPU's model name and which of `bench_results.CPU_FLAGS` its flags have (read as
    the bf16 verdict reads them, `precision.cpu_info`), and what they make it."""
    from seqtune.experiments.bench_results import CPU_FLAGS, cpu_kind
    from seqtune.inference.precision import cpu_info

    info = cpu_info()
    flags = None if info.flags is None else {f: f in info.flags for f in CPU_FLAGS}
    return {"model": info.model, "kind": cpu_kind(flags), "flags": flags}


def _torch_version() -> str | None:
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def _script() -> tuple[str, str | None]:
    """The running script as `bench/<x>.py` and its docstring's first line."""
    main = sys.modules.get("__main__")
    path = Path(getattr(main, "__file__", None) or sys.argv[0]).resolve()
    doc = (getattr(main, "__doc__", None) or "").strip().splitlines()
    return (str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name), (doc[0] if doc else None)


def write_result(name: str, figures: dict, *, config: dict | None = None, headline: Sequence[str] | None = None,
                 measures: str | None = None, note: str | None = None, script: str | None = None,
                 out_dir: Path | None = None) -> Path:
    """Write `figures` (name -> number, or a small dict of numbers such as `spread`'s) to
    `out_dir`/`name`.json (default reports/bench) with what they hold for: `config` (the
    settings), the command line, CPU kind, load average at start and now, wall seconds since
    start, UTC date, commit, python and torch versions. `headline`: the figures
    docs/benchmarks.md's table shows (default: the first); `measures`: one line on what the
    script measures (default: its docstring's first line); `note`: what a reader must know to
    read the figures (one that holds by construction, not by measurement, says so); `script`:
    default the running one.
    Checked against the schema before writing: an invalid record is printed, then raises."""
    from seqtune.experiments.bench_results import VERSION, problems

    running, doc = _script()
    argv = [running if i == 0 else a for i, a in enumerate(sys.argv)] if sys.argv and sys.argv[0] else []
    record = {
        "schema": VERSION,
        "name": name,
        "script": script or running,
        "measures": measures or doc or "",
        "figures": figures,
        "headline": list(headline) if headline is not None else list(figures)[:1],
        "config": dict(config or {}),
        "command": argv,
        "cpu": cpu(),
        "load_average": {"before": [round(x, 2) for x in _START[1]], "after": [round(x, 2) for x in os.getloadavg()]},
        "seconds": round(time.perf_counter() - _START[0], 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "python": platform.python_version(),
        "torch": _torch_version(),
    }
    if note:
        record["note"] = note
    # numpy/torch scalars as plain numbers (`.item()`); anything else stays a string and fails the check
    record = json.loads(json.dumps(record, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    bad = problems(record, name)
    if bad:
        print(json.dumps(record, indent=2), file=sys.stderr)
        raise ValueError("bench result not written, it breaks the schema:\n  " + "\n  ".join(bad))
    path = (out_dir or RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


# ---------------------------------------------------------------------------- the real service


def load_average() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def seqtune_cli(*args: str, env: dict[str, str]) -> None:
    """`seqtune ARGS...` in a subprocess (from the repository root), failing on a non-zero exit."""
    subprocess.run([sys.executable, "-m", "seqtune.cli", *args], env=env, check=True, cwd=REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`bentoml serve service.service:Seqtune` on a free loopback port, in its own process group."""

    def __init__(self, params: Path, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "service.service:Seqtune", "--host", "127.0.0.1", "--port", str(self.port)],
            env=dict(env, SEQTUNE_PARAMS=str(params)), cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited ({self.proc.returncode}); see {self._log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the service was not ready within {timeout:.0f}s; see {self._log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()
