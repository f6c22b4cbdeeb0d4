"""Where a model runs and in which precision: the device, and what `precision: auto|bf16|autocast|fp32`
means on it (the weights' dtype, and why).

    python -c "from seqtune.inference.devices import pick_device, resolve_precision as r; d = pick_device(); print(d, r('auto', d))"

The policy only: whether bf16 is native on a device is decided by fact in
`seqtune.inference.precision` (CPU flags, then a measured matmul, cached per machine). The
generator, training (`train.precision`) and the bench scripts all ask here.
"""

from __future__ import annotations

import torch

from seqtune.inference.precision import bf16_verdict

PRECISIONS = ("auto", "bf16", "autocast", "fp32")


def pick_device() -> torch.device:
    """CUDA > MPS > CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively on `device`, by fact (`seqtune.inference.precision`): CUDA
    Ampere+; a CPU whose flags name avx512_bf16/amx_bf16 and whose bf16 matmul measured faster
    than fp32 (once per machine, cached); never MPS.

    Emulated bf16 is never a speedup: on an AVX512 Xeon without avx512_bf16 a
    (1024x576)@(576x1536) matmul ran 56 GFLOP/s in bf16 vs 229 in fp32 (4x slower), on an
    AVX2-only EPYC 1,119 ms vs 24.6 ms (45x; `bench/cpu_bf16.py`). oneDNN's own answer
    (`_is_mkldnn_bf16_supported`) is True on the Xeon, so it is not asked."""
    return bf16_verdict(device).native


def resolve_precision(precision: str, device: torch.device) -> str:
    """What `precision` (evaluate/serve.precision) means on `device`: bf16, autocast or fp32.

    auto: bf16 weights where bf16 is native, else fp32. bf16 weights halve the bytes each
    decode step reads: a single request of make run's smiles2iupac champion took p50 0.71-0.78 s
    in bf16 vs 1.04-1.38 s under bf16 autocast (fp32 weights cast per call) and ~1.3 s in fp32,
    and batched greedy ran 15.3 vs 8.5-10.8 items/s, structure match 0.205 vs 0.210 on the same
    200 items (`bench/request_latency.py`, 2-core AVX512-BF16 EPYC). `autocast` is how
    older evaluations ran (their records say so); asking for bf16 where it is emulated is an error."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision in ("bf16", "autocast") and not native:
        raise ValueError(f"precision {precision}: {device.type} has no native bf16 ({bf16_verdict(device).reason}): "
                         "use auto or fp32")
    return precision


def precision_reason(asked: str, resolved: str, device: torch.device) -> str:
    """Why `asked` (a params.yaml precision) ran as `resolved` on `device`: what MLflow tags
    and the service's /metadata record beside the precision."""
    if asked == "fp32":
        return "fp32 asked"  # no verdict needed: nothing is measured for it
    return f"{asked} -> {resolved}: {bf16_verdict(device).reason}"


def weights_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype to hold the weights in for `precision` on `device` (bf16 only for bf16;
    autocast keeps fp32 weights)."""
    return torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32
