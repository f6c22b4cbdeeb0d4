"""Atomic writes: nothing half-written on failure, usual permissions on success."""

from __future__ import annotations

import pytest

from seqtune.files import atomic_dir, atomic_path, write_json


def test_atomic_path_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_swaps_whole_folder_with_readable_permissions(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    assert (target / "w.bin").read_bytes() == b"1"
    assert target.stat().st_mode & 0o055 == 0o055  # group/other can read and enter
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w.bin").write_bytes(b"2")
        raise RuntimeError("crash")
    assert (target / "w.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    write_json(tmp_path / "m.json", {})
    assert (tmp_path / "m.json").stat().st_mode & 0o044 == 0o044
