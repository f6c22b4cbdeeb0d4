"""What service/service.py runs its models with, from the inference package and `chem`: the
generator loader, the stored-weights check, and the OPSIN warm-up.

    python -c "from seqtune.serving.runtime import load_generator; print(load_generator)"

`service/` imports only `seqtune.config`, `seqtune.log`, `seqtune.tasks` and `seqtune.serving`
(ARCHITECTURE.md; tests/test_architecture.py checks it), so what it needs from further down
comes through here. The names are the inference package's own objects, not copies or
wrappers, and each is imported on first use (PEP 562 `__getattr__`), as the service imported
them before: `check_weights` brings in torch, `load_generator` transformers and the
generator, and neither runs when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqtune.chem import warm_opsin
    from seqtune.inference.loader import load_generator
    from seqtune.inference.weights import CorruptModelError, check_weights

__all__ = ["CorruptModelError", "check_weights", "load_generator", "warm_opsin"]


def __getattr__(name: str) -> Any:
    if name == "load_generator":
        from seqtune.inference.loader import load_generator

        return load_generator
    if name in ("CorruptModelError", "check_weights"):
        from seqtune.inference import weights

        return getattr(weights, name)
    if name == "warm_opsin":
        from seqtune.chem import warm_opsin

        return warm_opsin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
