"""Atomic outputs: a failing step leaves the outputs of the last good run untouched."""

from __future__ import annotations

import pytest

from renalmae.io import atomic_dir, atomic_file, read_json, write_json


def test_atomic_dir_replaces_the_old_output_on_success(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("old")
    with atomic_dir(out_dir) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(path.name for path in out_dir.iterdir()) == ["new.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_keeps_the_old_output_when_the_step_fails(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out_dir) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("step failed")
    assert (out_dir / "old.txt").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_atomic_file_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "splits.json"
    write_json(path, {"version": 1})
    with pytest.raises(RuntimeError), atomic_file(path) as staging:
        staging.write_text("{broken")
        raise RuntimeError("interrupted")
    assert read_json(path) == {"version": 1}
