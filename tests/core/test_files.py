"""rebuy.files: a write either lands whole or leaves the old file (and no temp file) behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rebuy.files import atomic_path, swap_in_dir, write_bytes, write_parquet, write_text


def test_writes_replace_the_target_and_leave_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    write_bytes(target, b"bytes", fsync=True)
    assert target.read_bytes() == b"bytes"
    write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet")["a"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["report.json", "sub", "t.parquet"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_one(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        assert tmp.parent == target.parent and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        raise RuntimeError("crash mid-write")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_swap_in_dir_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "canonical"
    swap_in_dir(target, lambda d: (d / "a.txt").write_text("1", encoding="utf-8"))

    def fails(d: Path) -> None:
        (d / "b.txt").write_text("2", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError):
        swap_in_dir(target, fails)
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    swap_in_dir(target, lambda d: (d / "b.txt").write_text("2", encoding="utf-8"))
    assert [p.name for p in target.iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["canonical"]
