"""What service/service.py runs its models with, from the pipeline and `chem`: the generator,
the stored-weights check, and the OPSIN warm-up.

    python -c "from seqtune.serving.runtime import Generator; print(Generator)"

`service/` imports only `seqtune.config`, `seqtune.log`, `seqtune.tasks` and `seqtune.serving`
(ARCHITECTURE.md; tests/test_architecture.py checks it), so what it needs from further down
comes through here. The names are the pipeline's own objects, not copies or wrappers, and
each is imported on first use (PEP 562 `__getattr__`), as the service imported them before:
`check_weights` brings in torch, `Generator` transformers and the generation module, and
neither runs when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqtune.chem import warm_opsin
    from seqtune.pipeline.generation import Generator
    from seqtune.pipeline.model_files import CorruptModelError, check_weights

__all__ = ["CorruptModelError", "Generator", "check_weights", "warm_opsin"]


def __getattr__(name: str) -> Any:
    if name == "Generator":
        from seqtune.pipeline.generation import Generator

        return Generator
    if name in ("CorruptModelError", "check_weights"):
        from seqtune.pipeline import model_files

        return getattr(model_files, name)
    if name == "warm_opsin":
        from seqtune.chem import warm_opsin

        return warm_opsin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
