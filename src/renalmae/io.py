"""Atomic outputs: a step writes to a temporary sibling path and renames it into place at the end.

So a failed or killed step never leaves a half-written output, and the outputs of the last good run
stay untouched until the new ones are complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `final_dir` only if the block succeeds."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    try:
        yield staging_dir
    except BaseException:
        shutil.rmtree(staging_dir, ignore_errors=True)
        raise
    replace_path(staging_dir, final_dir)


@contextlib.contextmanager
def atomic_file(final_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path that replaces `final_path` only if the block succeeds."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging_name = tempfile.mkstemp(prefix=f".{final_path.name}.tmp-", dir=final_path.parent)
    os.close(fd)
    staging_path = Path(staging_name)
    try:
        yield staging_path
    except BaseException:
        staging_path.unlink(missing_ok=True)
        raise
    os.replace(staging_path, final_path)


def replace_path(staging: Path, final: Path) -> None:
    """Move `staging` onto `final` (file or directory), removing what `final` held before."""
    if final.is_dir() and not final.is_symlink():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        if final.exists() or final.is_symlink():
            final.unlink()
        os.replace(staging, final)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON, atomically."""
    with atomic_file(path) as staging_path:
        staging_path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
