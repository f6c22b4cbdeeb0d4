"""Whether bf16 is native on a device, decided by fact: CPU flags, then a measured matmul.

    python -m seqtune.inference.precision              # this machine's verdict and why (cached)
    python -m seqtune.inference.precision --remeasure  # measure again, ignoring the cache

`torch.ops.mkldnn._is_mkldnn_bf16_supported()` answers True on any AVX512 core, because
oneDNN *emulates* bf16 there: on an Intel Xeon with AVX512 but no avx512_bf16/AMX a
1024x576 @ 576x1536 matmul ran 229 GFLOP/s in fp32 vs 56 in bf16, a training step 266 vs 66
tokens/s, batched greedy decoding 10.0 vs 4.3 items/s. So `precision: auto` cannot trust it.
Instead, on a CPU:

- Linux: /proc/cpuinfo's flags must name `avx512_bf16` or `amx_bf16`; without either bf16
  is emulated (AVX512) or worse (AVX2: ~45x slower per matmul), and the verdict is fp32 with
  no measurement.
- Where a flag is present, or the flags cannot be read (macOS, an aarch64 /proc/cpuinfo),
  a few ms of fp32 vs bf16 matmul at the shapes training and decoding use decide: bf16 only
  when it is at least `MARGIN` times as fast at every shape. The verdict is cached per
  machine (CPU model name + flags digest + torch version) in `precision.json` under
  `cache_dir()`, so it is measured once, not at every load.

CUDA keeps `torch.cuda.is_bf16_supported()` (Ampere and newer); MPS stays fp32 (bf16 support
there is partial). Callers go through `seqtune.inference.devices.native_bf16`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seqtune.files import write_json

log = logging.getLogger(__name__)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 CPU flags (as /proc/cpuinfo spells them) of bf16 done in hardware, not emulated."""
SHAPES = ((1024, 576, 1536), (32, 576, 1536))
"""(m, k, n) of the measured matmuls: a training batch of 32 x 32 tokens through SmolLM2's MLP
up-projection, and one decode step of a batch of 32 through the same layer."""
MARGIN = 1.1
"""bf16 must be at least this many times as fast as fp32 at every shape: a tie is not worth
bf16's rounding, and timing noise must not flip the verdict."""
CACHE_FILE = "precision.json"
VERSION = 1
"""Part of the cache key: a change to the shapes or the rule measures again."""


@dataclass(frozen=True)
class Verdict:
    """Whether bf16 is native here, and why. `speedup`: the measured fp32 time / bf16 time at
    the slowest-for-bf16 shape (None where nothing was measured)."""

    native: bool
    reason: str
    speedup: float | None = None


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str] | None
    """None where the flags cannot be read (not Linux, or no x86 `flags` line)."""


def cpu_info(text: str | None = None) -> CpuInfo:
    """The CPU's model name and flags from /proc/cpuinfo's text (read when not given)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            text = ""
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:
            flags = frozenset(value.split())
        if model is not None and flags is not None:
            break  # every core repeats the first one's lines
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown", flags)


def cache_dir() -> Path:
    """SEQTUNE_CACHE_DIR, else $XDG_CACHE_HOME/seqtune, else ~/.cache/seqtune."""
    if os.environ.get("SEQTUNE_CACHE_DIR"):
        return Path(os.environ["SEQTUNE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqtune"


def cache_key(cpu: CpuInfo) -> str:
    """Which machine and software a cached verdict holds for."""
    flags = "no-flags" if cpu.flags is None else hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:16]
    return f"v{VERSION} | {cpu.model} | flags {flags} | torch {torch.__version__}"


def _ms_per_call(a: torch.Tensor, b: torch.Tensor, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return (time.perf_counter() - t) / reps * 1000


def measure_speedups(shapes=SHAPES, *, rounds: int = 3, target_ms: float = 5.0) -> dict[str, float]:
    """fp32 time / bf16 time of one matmul per shape (> 1: bf16 faster), "MxK@KxN" keyed.

    fp32 and bf16 alternate round by round, and each keeps its best round, so a burst of
    other work on the cores slows one round of both rather than one precision. On one thread:
    the question is the core's instructions, and with every core's thread in the pool one
    busy core stalls each small matmul at its barrier (a 32x576@576x1536 fp32 matmul took
    ~15 ms on 2 threads beside another process vs 0.9 ms on 1), which would pull both sides
    toward the same time and cache a wrong verdict."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {f"{m}x{k}@{k}x{n}": _speedup(m, k, n, rounds, target_ms) for m, k, n in shapes}
    finally:
        torch.set_num_threads(threads)


def _speedup(m: int, k: int, n: int, rounds: int, target_ms: float) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    pairs = {torch.float32: (a, b), torch.bfloat16: (a.bfloat16(), b.bfloat16())}
    # The first call picks and builds the kernel; its time also sets the repetitions.
    reps = {dt: max(1, round(target_ms / max(_ms_per_call(*ab, 1), 1e-3))) for dt, ab in pairs.items()}
    best = {dt: float("inf") for dt in pairs}
    for _ in range(rounds):
        for dt, ab in pairs.items():
            best[dt] = min(best[dt], _ms_per_call(*ab, reps[dt]))
    return best[torch.float32] / best[torch.bfloat16]


def _flag_verdict(cpu: CpuInfo) -> Verdict | None:
    """The verdict the flags alone give (no bf16 flag: not native), else None: measure."""
    if cpu.flags is not None and not cpu.flags & set(BF16_FLAGS):
        return Verdict(False, "cpu flags have no avx512_bf16/amx_bf16: bf16 would be emulated, slower than fp32")
    return None


def _measured_verdict(cpu: CpuInfo, speedups: dict[str, float]) -> Verdict:
    having = ("cpu flags unreadable" if cpu.flags is None
              else "cpu has " + "/".join(f for f in BF16_FLAGS if f in cpu.flags))
    worst = min(speedups.values())
    shown = ", ".join(f"{v:.2f}x at {s}" for s, v in speedups.items())
    if worst >= MARGIN:
        return Verdict(True, f"{having}; bf16 matmul measured {shown} fp32's speed", round(worst, 3))
    return Verdict(False, f"{having}, but bf16 matmul measured {shown} fp32's speed (needs >= {MARGIN}x "
                          "at every shape): fp32", round(worst, 3))


def _read_cache(path: Path) -> dict:
    """The cache file's entries; {} when it is missing or not a JSON object (then rewritten)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("precision cache %s unreadable (%s): measuring again", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def _cached(entry) -> Verdict | None:
    if not isinstance(entry, dict):
        return None
    native, reason, speedup = entry.get("native"), entry.get("reason"), entry.get("speedup")
    if not isinstance(native, bool) or not isinstance(reason, str) or not isinstance(speedup, (int, float, type(None))):
        return None
    return Verdict(native, reason, speedup)


def cpu_verdict(cpu: CpuInfo | None = None, *, cache: Path | None = None, measure=None,
                remeasure: bool = False) -> Verdict:
    """Whether bf16 is native on this CPU: by its flags, else measured once and cached in
    `cache` (default cache_dir()/precision.json). `measure` (default measure_speedups)
    returns fp32/bf16 speedups by shape: tests pass a fake."""
    cpu = cpu or cpu_info()
    flagged = _flag_verdict(cpu)
    if flagged is not None:
        return flagged
    path = Path(cache) if cache is not None else cache_dir() / CACHE_FILE
    key = cache_key(cpu)
    entries = _read_cache(path)
    hit = None if remeasure else _cached(entries.get(key))
    if hit is not None:
        return hit
    log.info("measuring fp32 vs bf16 matmul on %s (once; cached in %s)", cpu.model, path)
    verdict = _measured_verdict(cpu, (measure or measure_speedups)())
    entries[key] = asdict(verdict) | {"measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        write_json(path, entries)
    except OSError as e:  # a read-only home: the verdict still holds, it is just measured again next time
        log.warning("precision cache %s not written (%s)", path, e)
    return verdict


def bf16_verdict(device: torch.device | str) -> Verdict:
    """Whether bf16 is native on `device` (cuda, cpu or mps), and why."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return Verdict(ok, f"cuda: torch.cuda.is_bf16_supported() is {ok} ({torch.cuda.get_device_name(device)})")
    if device.type == "cpu":
        return cpu_verdict()
    return Verdict(False, f"{device.type}: bf16 support is partial; fp32 is the safe choice")


def _cli(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m seqtune.inference.precision", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    ap.add_argument("--remeasure", action="store_true", help="measure again and overwrite the cached verdict")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if a.device == "cpu":
        cpu = cpu_info()
        verdict = cpu_verdict(cpu, remeasure=a.remeasure)
        print(f"cpu: {cpu.model}; key: {cache_key(cpu)}; cache: {cache_dir() / CACHE_FILE}")
    else:
        verdict = bf16_verdict(a.device)
    print(f"native bf16: {verdict.native} ({verdict.reason})")


if __name__ == "__main__":
    _cli()
