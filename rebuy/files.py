"""Atomic file writes: readers see the old file or the new one, never half of either.

Every writer of a file another process may read (reports, Parquet tables, the sink, the prediction log)
goes through `atomic_path`: write to a hidden temp name beside the target, then `os.replace` it in (atomic on
one file system); on any failure the temp file is removed and the target is untouched. Folders that must
change as a whole use `swap_in_dir`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _sibling(target: Path, kind: str) -> Path:
    # hidden and unique per writer: globs such as *.parquet never see it, two writers never share it
    return target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}"


@contextmanager
def atomic_path(target: Path, *, fsync: bool = False) -> Iterator[Path]:
    """A temp path beside `target` to write to; renamed over `target` when the block ends without error.

    `fsync`: flush the temp file to disk before the rename (a crash then leaves the old or the new
    contents, not an empty file), for files whose loss matters more than a write's latency.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: Path, text: str, *, fsync: bool = False) -> Path:
    """`text` (UTF-8) into `target`, atomically."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_bytes(target: Path, data: bytes, *, fsync: bool = False) -> Path:
    """`data` into `target`, atomically."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return target


def write_parquet(df: Any, target: Path) -> Path:
    """A DataFrame as Parquet (no index) into `target`, atomically."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
    return target


def swap_in_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Fill a fresh folder beside `target`, then swap it in by renames: readers see the old contents or
    the new, never half of either; on any failure the old folder is back and the temp one gone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _sibling(target, "tmp"), _sibling(target, "old")
    tmp.mkdir()
    try:
        write(tmp)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target
