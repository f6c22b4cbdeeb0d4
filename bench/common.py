"""What more than one bench script uses: the one module bench scripts share code through.

    .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); from common import molecules; print(molecules(3, 0))"

bench/ is not a package: a script puts its own folder first on `sys.path` and imports
`common` (`sys.path.insert(0, str(Path(__file__).resolve().parent))`). A bench script
imports no other bench script, only this module and the data module `known_molecules.py`
(tests/test_architecture.py checks it); whatever two scripts need moves here. Imports of
seqtune, torch, transformers and httpx are inside the functions, so importing this module
costs a script nothing it does not use.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

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
    from seqtune.io import write_json
    from seqtune.pipeline.models import BASE_MODEL_CARD, resolve

    meta = resolve(name, out, downloads=REPO / "data" / "downloads")
    if card:
        write_json(out / BASE_MODEL_CARD, meta)
    return out


def base_model(name: str, cache: Path) -> Path:
    """A resolved base model folder: the project's data/base_model when it is `name`, else
    `name` resolved (with its card) into `cache`/base."""
    from seqtune.pipeline.models import BASE_MODEL_CARD

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
