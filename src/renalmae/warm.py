"""A warm worker for `make run`: the `renalmae` steps that DVC starts one process at a time are forked from
one process that has already imported torch, timm, MLflow and scikit-learn, instead of each importing them
again (13–16 s of every training stage's ~30 s on 2 cores; docs/performance.md).

    renalmae warm -- dvc repro          # what `make run` runs

`renalmae warm -- COMMAND` starts the worker, runs COMMAND with `RENALMAE_WORKER` naming the worker's socket,
stops the worker when COMMAND ends and exits with COMMAND's status. A `renalmae` command that finds
`RENALMAE_WORKER` set hands the worker its arguments, environment, working directory, umask, `sys.path` and
its standard input, output and error (the descriptors themselves, `SCM_RIGHTS`), passes on the SIGINT,
SIGTERM and SIGHUP it receives, and ends as the step ended: with its exit status, or by its signal.

The worker forks one child per command. The child takes on the caller's descriptors, directory and
environment, re-imports `renalmae` from source (an edit between two stages is seen, as by a fresh process),
reseeds what a fresh process seeds from the OS (`random`, NumPy's global generator, torch's default
generator), and runs `renalmae.cli.main`: the code path of a cold start. Only third-party libraries are
preloaded and nothing runs in the worker before a fork (no tensor, no thread pool), so a child is a fresh
process after those imports; PyTorch's DataLoader forks its workers the same way. The worker is in its own
session: a terminal's Ctrl-C reaches the steps only through their `renalmae` command.

Where the worker cannot serve (still importing, gone, another Python), the command runs in its own process,
as without it: no result depends on the worker. Linux and macOS (Unix sockets with descriptor passing).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ENV = "RENALMAE_WORKER"
PRELOAD = (
    "torch", "torch._dynamo", "torchvision", "timm", "safetensors.torch", "mlflow", "sklearn.metrics",
    "scipy.stats", "pandas", "pyarrow.parquet", "PIL.Image", "matplotlib", "tqdm",
    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
)  # fmt: skip
"""What the stages after `split` import, in import order: torch._dynamo (the first optimiser step imports
it), MLflow's SQL stores (a `sqlite:` or PostgreSQL tracking URI: 1.8 s of SQLAlchemy and alembic)."""
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
READY_TIMEOUT_S = 120.0

log = logging.getLogger(__name__)
_HEADER = struct.Struct("!I")
_kept_streams: list = []  # the worker's own stdio objects, kept alive in a child (they own fds 0-2)


# ---------------------------------------------------------------- the caller: `renalmae ...` with ENV set


def forward(argv: list[str]) -> int | None:
    """Run `renalmae <argv>` in the worker named by `$RENALMAE_WORKER`; its exit status, or None when there
    is no worker to run it (the caller then runs the command itself). Ends this process by the step's
    signal when a signal ended the step."""
    path = os.environ.get(ENV)
    if not path or not all(_is_open(fd) for fd in (0, 1, 2)):
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:  # not ready yet, or gone: a cold start gives the same result
        client.close()
        return None
    with client:
        request = json.dumps(
            {
                "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path,
                "python": _python(), "umask": _umask(),
            }
        ).encode()  # fmt: skip
        socket.send_fds(client, [_HEADER.pack(len(request))], [0, 1, 2])
        client.sendall(request)
        reader = client.makefile("rb")
        answer = json.loads(reader.readline() or b"{}")
        if "pid" not in answer:
            print(f"renalmae: the warm worker did not run the command: {answer.get('refused', 'no answer')}; "
                  "running it in this process", file=sys.stderr)  # fmt: skip
            return None
        pid = answer["pid"]
        previous = {
            sig: signal.signal(sig, lambda signum, _frame: _pass_on(pid, signum)) for sig in FORWARDED_SIGNALS
        }
        try:
            line = reader.readline()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if not line:
        print(f"renalmae: the warm worker ended before the step (pid {pid}) did", file=sys.stderr)
        return 1
    status = os.waitstatus_to_exitcode(json.loads(line)["status"])
    if status < 0:  # ended by a signal: end the same way, so that DVC reads what a cold start gives it
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _pass_on(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _python() -> str:
    """The interpreter and environment (venv) whose libraries a process imports."""
    return f"{os.path.realpath(sys.executable)} in {sys.prefix}"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- `renalmae warm -- COMMAND`


def run_with_worker(command: list[str]) -> int:
    """Run COMMAND (argv) with a warm worker; COMMAND's exit status. The worker is stopped when COMMAND
    ends, however it ends. Inside another `renalmae warm` the command uses that worker."""
    if not command:
        print("renalmae warm: name the command to run, e.g. `renalmae warm -- dvc repro`", file=sys.stderr)
        return 2
    if shutil.which(command[0]) is None:
        print(f"renalmae warm: {command[0]}: command not found (is the venv's bin on PATH?)", file=sys.stderr)
        return 127
    if os.environ.get(ENV):
        return subprocess.call(command)
    with tempfile.TemporaryDirectory(prefix="renalmae-worker-") as folder:  # mode 0700: this user only
        path = str(Path(folder) / "socket")
        worker = subprocess.Popen(
            [sys.executable, "-m", "renalmae.warm", path], stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            with _ignoring(signal.SIGINT):  # Ctrl-C reaches COMMAND (the foreground group); we wait for it
                return subprocess.call(command, env={**os.environ, ENV: path})
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@contextlib.contextmanager
def _ignoring(signum: int):
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signum, previous)


# ---------------------------------------------------------------- the worker


def serve(path: str, preload: tuple[str, ...] = PRELOAD) -> None:
    """Import `preload`, listen on `path` (it appears once the imports are done), fork a child per request
    until SIGTERM or until the process that started the worker is gone."""
    parent = os.getppid()
    for name in preload:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(16)
    os.rename(staging, path)  # ready: callers that connect from now on are served
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    running: dict[int, socket.socket] = {}
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        while not stopping and os.getppid() == parent:
            for key, _ in selector.select(timeout=0.5):
                if key.fileobj is listener:
                    _accept(listener, selector, running)
                elif not _still_there(key.fileobj):  # the caller is gone: stop its step as DVC would
                    selector.unregister(key.fileobj)
                    _pass_on(key.data, signal.SIGTERM)
            _reap(selector, running)
        for pid in running:
            _pass_on(pid, signal.SIGTERM)
    listener.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _still_there(connection: socket.socket) -> bool:
    try:
        return bool(connection.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def _accept(listener, selector, running) -> None:
    connection, _ = listener.accept()
    connection.setblocking(True)
    connection.settimeout(10)
    fds: list[int] = []
    try:
        header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 3)
        (size,) = _HEADER.unpack(header)
        request = json.loads(_receive(connection, size))
    except (OSError, ValueError, struct.error):  # not one of our commands, or it went away: drop it
        for fd in fds:
            os.close(fd)
        connection.close()
        return
    connection.settimeout(None)
    if request["python"] != _python():
        _answer(connection, {"refused": f"it runs {_python()}, the command {request['python']}"})
        for fd in fds:
            os.close(fd)
        connection.close()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns into the worker's loop
        status = 1
        try:
            selector.close()
            listener.close()
            for other in [connection, *running.values()]:
                other.close()
            status = _run_child(request, fds)
        except BaseException:  # noqa: BLE001 - a child reports everything, then ends here
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)
    for fd in fds:
        os.close(fd)
    _answer(connection, {"pid": pid})
    running[pid] = connection
    selector.register(connection, selectors.EVENT_READ, pid)


def _receive(connection: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = connection.recv(min(left, 1 << 20))
        if not chunk:
            raise ValueError("the request ended early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _answer(connection: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):
        connection.sendall(json.dumps(message).encode() + b"\n")


def _reap(selector, running) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = running.pop(pid, None)
        if connection is None:
            continue
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(connection)
        _answer(connection, {"status": status})
        connection.close()


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become the caller's process, run `renalmae <argv>`, run the exit handlers."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update({key: value for key, value in request["env"].items() if key != ENV})
    sys.path[:] = request["path"]
    sys.argv = ["renalmae", *request["argv"]]
    _reopen_stdio()
    _reseed()
    for name in [name for name in sys.modules if name == "renalmae" or name.startswith("renalmae.")]:
        del sys.modules[name]
    interrupted = False
    try:
        status = importlib.import_module("renalmae.cli").main(request["argv"])
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        status, interrupted = 1, True
    except BaseException:  # noqa: BLE001 - a bug: its traceback, as a cold process prints it
        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()  # what a cold process runs at exit (MLflow ends its run, logging flushes)
    if interrupted:  # a cold Python ends by SIGINT after an uncaught KeyboardInterrupt
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


def _reopen_stdio() -> None:
    """Text streams over fds 0-2 buffered as Python buffers a fresh process's (stdout line-buffered on a
    terminal, stderr always; `PYTHONUNBUFFERED` honoured). The worker's own objects are kept alive: they own
    the descriptors."""
    _kept_streams.extend([sys.stdin, sys.stdout, sys.stderr])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = os.environ.get("PYTHONIOENCODING", "").split(":")[0] or "utf-8"
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        raw = io.FileIO(fd, "w", closefd=False)
        stream = io.TextIOWrapper(
            io.BufferedWriter(raw), encoding=encoding, errors="backslashreplace" if fd == 2 else "strict",
            line_buffering=fd == 2 or raw.isatty(), write_through=unbuffered,
        )  # fmt: skip
        setattr(sys, name, stream)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _reseed() -> None:
    """What a fresh process seeds from the OS: `random`, NumPy's global generator, torch's default one."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def wait_until_ready(path: str, timeout_s: float = READY_TIMEOUT_S) -> bool:
    """True once the worker at `path` accepts commands (its imports done); for tests and benchmarks."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.1)
    return False


if __name__ == "__main__":  # python -m renalmae.warm SOCKET [MODULE ...]   (default: PRELOAD)
    serve(sys.argv[1], tuple(sys.argv[2:]) or PRELOAD)
