"""Atomic outputs: a step writes to a temporary sibling path and renames it into place at the end.

So a failed or killed step never leaves a half-written output, and the outputs of the last good run
stay untouched until the new ones are complete. A step stopped by SIGTERM (DVC, Kubernetes, a user's
`kill`) leaves no temporary output either: while a temporary path is open, SIGTERM raises `SystemExit`
(exit status 143, as the signal would give), so the removal below runs like for any other failure.
Checkpoints are not temporary outputs: what a killed step resumes from (training checkpoints, decoded
ingest shards) lives beside the output, in `checkpoint_dir`, stays, and is removed after success.

A process killed outright (SIGKILL, out of memory, a lost node) cleans nothing up, so every temporary
path is named after its writer (`.<name>.tmp-<pid>.<start time>@<host>@...`) and the next writer of
the same output removes what a dead writer on this host left (`sweep_leftovers`); a live writer's
temporary path, or one of another host or of unknown owner, is never touched.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from renalmae.params import Params

SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM
_open_temporaries = 0


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(SIGTERM_EXIT_STATUS)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Inside the block SIGTERM raises `SystemExit(143)` instead of ending the process on the spot.

    Only where SIGTERM has its default action and only in the main thread (where Python runs signal
    handlers); nested blocks share one handler, and the default comes back after the outermost one.
    """
    global _open_temporaries
    owns = threading.current_thread() is threading.main_thread() and (
        _open_temporaries > 0 or signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    )
    if owns:
        if _open_temporaries == 0:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        _open_temporaries += 1
    try:
        yield
    finally:
        if owns:
            _open_temporaries -= 1
            if _open_temporaries == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


LEFTOVER_KINDS = ("tmp", "old")  # staging paths and outputs retired by `replace_path`


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` (to tell it from a later process given the same pid), or None
    when no such process runs."""
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return "unknown"


def _owner_tag() -> str:
    """`<pid>.<start time>@<host>@`: who writes a temporary path, for `sweep_leftovers`."""
    return f"{os.getpid()}.{_process_start(os.getpid())}@{socket.gethostname()}@"


def _is_dead_writers(path: Path, final: Path) -> bool:
    """True when `path` is a temporary path of `final` whose writer, a process on this host, has ended."""
    for kind in LEFTOVER_KINDS:
        prefix = f".{final.name}.{kind}-"
        if path.name.startswith(prefix):
            owner, host, *_ = (path.name.removeprefix(prefix) + "@@").split("@")
            pid, _, start = owner.partition(".")
            if not pid.isdigit() or not start or host != socket.gethostname():
                return False  # unknown owner, or a writer on another host (a shared volume)
            running = _process_start(int(pid))
            return running is None or running not in (start, "unknown")
    return False


def sweep_leftovers(final: str | os.PathLike) -> list[Path]:
    """Remove the temporary paths of `final` that a killed writer left (module docstring); return them."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    removed = []
    for kind in LEFTOVER_KINDS:
        for path in final.parent.glob(f".{glob.escape(final.name)}.{kind}-*"):
            if _is_dead_writers(path, final):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_dir(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `final_dir` only if the block succeeds.

    On an exception, or SIGTERM (see the module docstring), the temporary directory is removed.
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(final_dir)
    with sigterm_as_exit():
        staging_dir = Path(
            tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-{_owner_tag()}", dir=final_dir.parent)
        )
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
    sweep_leftovers(final_path)
    with sigterm_as_exit():
        prefix = f".{final_path.name}.tmp-{_owner_tag()}"
        fd, staging_name = tempfile.mkstemp(prefix=prefix, dir=final_path.parent)
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
        retired = final.with_name(f".{final.name}.old-{_owner_tag()}")
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


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes (identifies the inputs of a run in its checkpoint fingerprint)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_dir(params: Params, out_dir: str | os.PathLike, run_name: str) -> Path:
    """Where the resume state of the run `run_name` writing into `out_dir` lives:
    `<train.checkpoint_dir>/<run_name>/` when set (a mounted volume on Kubeflow), else
    `<out_dir parent>/.checkpoints/<run_name>/` (beside the output, which DVC removes before a rerun)."""
    if params.train.checkpoint_dir:
        return Path(params.train.checkpoint_dir) / run_name
    return Path(out_dir).absolute().parent / ".checkpoints" / run_name


def remove_checkpoints(directory: Path | None) -> None:
    """Delete a run's resume state after success (and `.checkpoints/` once it is empty)."""
    if directory is not None and directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)
        parent = directory.parent
        if parent.name == ".checkpoints" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
