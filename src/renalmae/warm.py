"""A warm worker for `make run`: the `renalmae` steps that DVC starts one process at a time are forked from
one process that has already imported torch, timm, MLflow and scikit-learn, instead of each importing them
again (13–16 s of every training stage's ~30 s on 2 cores; docs/performance.md).

    renalmae warm -- dvc repro          # what `make run` runs

`renalmae warm -- COMMAND` starts the worker, runs COMMAND with `RENALMAE_WORKER` naming the worker's socket,
stops the worker when COMMAND ends and ends as COMMAND ended (its status, or its signal). A `renalmae`
command that finds `RENALMAE_WORKER` set hands the worker what a process of its own would have had: its
arguments, environment, working directory, umask, `sys.path`, standard streams (the descriptors themselves,
`SCM_RIGHTS`, and their encoding, error handler and buffering), the signals it ignores, and its nice value,
CPU affinity, resource limits and OOM score. It passes on the SIGINT, SIGTERM, SIGHUP and SIGQUIT it
receives (Ctrl-Z stops and resumes the step with it), and ends as the step ended.

The worker forks one child per command. The child takes all of the above on, re-imports `renalmae` from
source (an edit between two stages is seen, as by a fresh process), reseeds what a fresh process seeds from
the OS (`random`, NumPy's global generator, torch's default generator), re-reads `TZ`, runs
`renalmae.cli.main` (the code path of a cold start), runs the exit handlers a cold process runs and reports
a failed final flush as Python does (status 120). Only third-party libraries are preloaded, and no code of
theirs runs in the worker before a fork (no tensor, no torch thread pool; the native threads that BLAS and
pyarrow's jemalloc start when loaded have their own fork handlers), so a child is a fresh process after those
imports; PyTorch's DataLoader forks its workers the same way. The worker is in its own session: a terminal's
Ctrl-C reaches the steps only through their `renalmae` command. A step whose command is killed, or whose
worker dies, gets SIGTERM, then SIGKILL after `STOP_GRACE_S`.

What a fork cannot change is compared instead, and the command runs in its own process, as without the
worker, when it differs: another interpreter or venv, other interpreter options (`sys.flags`, `-W` /
`PYTHONWARNINGS`, `PYTHONHASHSEED`), another environment (libraries read some variables when imported:
TQDM_DISABLE, OMP_NUM_THREADS; only `PER_PROCESS` ones may differ: DVC's DVC_*, PATH, a shell's PWD), a
`sys.path` that imports a preloaded module from another file (a PYTHONPATH shadowing a library), another
cgroup, or a nice value, limit or OOM score the child could not take without privileges. So does a command
whose worker is not listening (still importing, gone), does not answer within `ANSWER_TIMEOUT_S` or cannot
fork. Under `make run` (and `dvc exp run`) none of these differ, and the e2e test fails if one did; other
set-ups (`dvc queue`'s workers set PYTHONPATH, a PyInstaller `dvc` its LD_LIBRARY_PATH) run cold, saying
why. No result depends on the worker. Linux (macOS: the
same, without affinity, OOM score, cgroups and the parent-death signal).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import resource
import select
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
it), MLflow's SQL stores (a `sqlite:` or PostgreSQL tracking URI: 1.8 s of SQLAlchemy and alembic). A module
missing here costs only its import time in the child."""
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
LIMITS = tuple(
    getattr(resource, name)
    for name in ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_MEMLOCK",
                 "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_STACK")
    if hasattr(resource, name)
)  # fmt: skip
PER_PROCESS = frozenset({ENV, "_", "PWD", "OLDPWD", "SHLVL", "PATH"})
"""Variables that describe the calling process and that no preloaded library reads when imported: shells set
`_`, PWD, OLDPWD, SHLVL; DVC sets DVC_ROOT, DVC_STAGE, DVC_EXP_* per stage (every `DVC_*` counts) and takes
pyenv's shims off PATH. They may differ from the worker's; the child gets the caller's."""
SHADOW_CHECK_CACHE: dict[tuple[str, ...], str | None] = {}
STOP_GRACE_S = 10.0
ANSWER_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 120.0

_HEADER = struct.Struct("!I")
_kept_streams: list = []  # the worker's own stdio objects, kept alive in a child (they own fds 0-2)


# ---------------------------------------------------------------- what a process of its own would have


def _startup() -> dict:
    """What is fixed when an interpreter starts, or read by libraries when they are imported, and a fork
    cannot change: must equal the worker's. The environment counts whole (TQDM_DISABLE, OMP_NUM_THREADS and
    the like are read at import), but for `PER_PROCESS` variables."""
    return {
        "python": f"{os.path.realpath(sys.executable)} in {sys.prefix}",
        "flags": list(sys.flags),
        "warnoptions": list(sys.warnoptions),
        "hashseed": os.environ.get("PYTHONHASHSEED"),
        "cgroup": _read("/proc/self/cgroup"),
        "env": {key: value for key, value in os.environ.items() if not _per_process(key)},
    }


def _per_process(variable: str) -> bool:
    return variable in PER_PROCESS or variable.startswith("DVC_")


def _attributes() -> dict:
    """What the child sets from the caller's: umask, nice, CPU affinity, resource limits, OOM score."""
    mask = os.umask(0o022)
    os.umask(mask)
    return {
        "umask": mask,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "limits": {str(limit): list(resource.getrlimit(limit)) for limit in LIMITS},
        "oom_score_adj": _read("/proc/self/oom_score_adj"),
    }


def _streams() -> list[dict]:
    """Encoding, error handler and buffering of this process's stdin / stdout / stderr, as Python set them
    from the locale, `PYTHONIOENCODING`, `PYTHONUNBUFFERED` and whether each is a terminal."""
    return [
        {
            "encoding": stream.encoding, "errors": stream.errors,
            "line_buffering": stream.line_buffering, "write_through": getattr(stream, "write_through", False),
            "raw": isinstance(getattr(stream, "buffer", None), io.FileIO),  # `python -u` / PYTHONUNBUFFERED
        }
        for stream in (sys.stdin, sys.stdout, sys.stderr)
    ]  # fmt: skip


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cannot_take(attributes: dict) -> str | None:
    """Why a child of this worker could not take on the caller's attributes (raising a nice value, a hard
    limit or the OOM score needs privileges), or None."""
    if os.geteuid() == 0:
        return None
    if attributes["nice"] < os.getpriority(os.PRIO_PROCESS, 0):
        return f"the command runs at nice {attributes['nice']}, below the worker's"
    for limit, (_, hard) in attributes["limits"].items():
        own = resource.getrlimit(int(limit))[1]
        if own != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > own):
            return f"the command's hard limit {limit} ({hard}) is above the worker's ({own})"
    theirs, mine = attributes["oom_score_adj"], _read("/proc/self/oom_score_adj")
    if theirs is not None and mine is not None and int(theirs) < int(mine):
        return "the command's OOM score adjustment is below the worker's"
    return None


# ---------------------------------------------------------------- the caller: `renalmae ...` with ENV set


def forward(argv: list[str]) -> int | None:
    """Run `renalmae <argv>` in the worker named by `$RENALMAE_WORKER`; its exit status, or None when the
    worker cannot run it (the caller then runs the command itself). Ends this process by the step's signal
    when a signal ended the step."""
    path = os.environ.get(ENV)
    if not path or not all(_is_open(fd) for fd in (0, 1, 2)) or None in (sys.stdin, sys.stdout, sys.stderr):
        return None
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was removed: a cold start says what it says
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:  # not ready yet, or gone: a cold start gives the same result
        client.close()
        return None
    ignored = [
        int(sig) for sig in (*FORWARDED_SIGNALS, signal.SIGTSTP) if signal.getsignal(sig) == signal.SIG_IGN
    ]
    request = {
        "argv": argv, "argv0": sys.argv[0], "cwd": cwd, "env": dict(os.environ), "path": sys.path,
        "resolved_path": [os.path.join(cwd, entry) for entry in sys.path],
        "startup": _startup(), "attributes": _attributes(), "streams": _streams(), "ignored": ignored,
    }  # fmt: skip
    with client:
        payload = json.dumps(request).encode()
        try:
            socket.send_fds(client, [_HEADER.pack(len(payload))], [0, 1, 2])
            client.sendall(payload)
            client.settimeout(ANSWER_TIMEOUT_S)
            reader = client.makefile("rb")
            answer = json.loads(reader.readline() or b"{}")
        except (OSError, ValueError) as error:  # socket.timeout is an OSError
            answer = {"refused": f"no answer ({type(error).__name__})"}
        if "pid" not in answer:
            reason = answer.get("refused", "no answer")
            print(
                f"renalmae: not run by the warm worker ({reason}); running it in this process",
                file=sys.stderr,
            )
            return None
        client.settimeout(None)
        step = _Step(answer["pid"])
        line = _wait_for_step(step, reader, ignored)
    if not line:
        print(f"renalmae: the warm worker ended before the step did; stopping it (pid {step.pid})",
              file=sys.stderr)  # fmt: skip
        step.stop()
        return 1
    status = os.waitstatus_to_exitcode(json.loads(line)["status"])
    if status < 0:  # ended by a signal: end the same way, so that DVC reads what a cold start gives it
        _end_by(-status)
    return status


class _Step:
    """The step a worker runs for this command, signalled through a pidfd where the OS has them (Linux 5.3):
    not its parent, we could otherwise signal a stranger that reused its pid after it ended."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def send(self, signum: int) -> bool:
        """False when the step has ended."""
        if self.pidfd is None:
            return _signal(self.pid, signum)
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM (a step removes its temporary outputs), SIGKILL after `STOP_GRACE_S`; returns when gone."""
        self.send(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.1)
        if self.alive():
            self.send(signal.SIGKILL)
            while self.alive():
                time.sleep(0.05)

    def alive(self) -> bool:
        if self.pidfd is not None:
            return not select.select([self.pidfd], [], [], 0)[0]  # readable once it has ended
        return _alive(self.pid)


def _wait_for_step(step: _Step, reader, ignored: list[int]) -> bytes:
    """The worker's status line for `step`, passing on the signals this process receives meanwhile (those it
    ignores stay ignored); Ctrl-Z stops the step with this process and `fg` resumes both."""

    def pass_on(signum, _frame):
        step.send(signum)

    def stop(_signum, _frame):
        step.send(signal.SIGSTOP)  # SIGTSTP would be discarded: the worker's process group is orphaned
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until SIGCONT
        signal.signal(signal.SIGTSTP, stop)
        step.send(signal.SIGCONT)

    handlers = {sig: pass_on for sig in FORWARDED_SIGNALS if sig not in ignored}
    if signal.SIGTSTP not in ignored:
        handlers[signal.SIGTSTP] = stop
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        return reader.readline()
    except OSError:
        return b""
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie child of this process is reaped, and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return _signal(pid, 0)
    return state not in ("Z", "X")


def _end_by(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _signal(pid: int, signum: int) -> bool:
    """Send `signum` to `pid`; False when there is no such process."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------- `renalmae warm -- COMMAND`


def run_with_worker(command: list[str]) -> int:
    """Run COMMAND (argv) with a warm worker; COMMAND's exit status (or this process ends by COMMAND's
    signal). The worker is stopped when COMMAND ends, however it ends; SIGTERM and SIGHUP sent to this
    process are passed on to COMMAND. Inside another `renalmae warm` the command uses that worker."""
    if not command:
        print("renalmae warm: name the command to run, e.g. `renalmae warm -- dvc repro`", file=sys.stderr)
        return 2
    if shutil.which(command[0]) is None:
        print(f"renalmae warm: {command[0]}: command not found (is the venv's bin on PATH?)", file=sys.stderr)
        return 127
    with _SignalsToCommand() as command_runner:
        if os.environ.get(ENV):  # inside another `renalmae warm`: its worker serves
            status = command_runner.call(command, dict(os.environ))
        else:
            with tempfile.TemporaryDirectory(
                prefix="renalmae-worker-"
            ) as folder:  # mode 0700: this user only
                path = str(Path(folder) / "socket")
                worker_command = [sys.executable, "-m", "renalmae.warm", path]
                worker = subprocess.Popen(worker_command, stdin=subprocess.DEVNULL, start_new_session=True)
                try:
                    status = command_runner.call(command, {**os.environ, ENV: path})
                finally:
                    worker.terminate()
                    try:
                        worker.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        worker.kill()
                        worker.wait()
    if status < 0:
        _end_by(-status)
    return status


class _SignalsToCommand:
    """While COMMAND runs: SIGTERM and SIGHUP to this process go on to it (one that arrives before it has
    started goes to it when it starts). Ctrl-C reaches COMMAND in the terminal's foreground process group, so
    this process only waits for it, with a do-nothing handler that exec resets to the default in COMMAND
    (SIG_IGN would be inherited: Ctrl-C would no longer stop `dvc repro`). A signal ignored when we started
    (SIGHUP under nohup, SIGINT in a background job) stays ignored, for COMMAND too."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.received: list[int] = []
        self.previous: dict = {}

    def __enter__(self) -> _SignalsToCommand:
        handlers = {signal.SIGINT: _wait_for_command}
        handlers |= {signal.SIGTERM: self._pass_on, signal.SIGHUP: self._pass_on}
        for sig, handler in handlers.items():
            if signal.getsignal(sig) != signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *_exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _pass_on(self, signum: int, _frame) -> None:
        self.received.append(signum)
        for process in self.processes:
            process.send_signal(signum)

    def call(self, command: list[str], env: dict[str, str]) -> int:
        process = subprocess.Popen(command, env=env)
        self.processes.append(process)
        for signum in self.received:
            process.send_signal(signum)
        return process.wait()


def _wait_for_command(_signum, _frame) -> None:
    """SIGINT while COMMAND runs: COMMAND has it too and decides; this process waits for COMMAND's end."""


# ---------------------------------------------------------------- the worker


def serve(path: str, preload: tuple[str, ...] = PRELOAD) -> None:
    """Import `preload`, listen on `path` (it appears once the imports are done), fork a child per request
    until SIGTERM or until the process that started the worker is gone."""
    parent = os.getppid()
    startup = _startup()
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
    # steps whose caller is gone get SIGTERM, and SIGKILL after STOP_GRACE_S (they may ignore SIGTERM)
    stopping_by: dict[int, float] = {}
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        while not stopping and os.getppid() == parent:
            for key, _ in selector.select(timeout=0.5):
                if key.fileobj is listener:
                    _accept(listener, selector, running, startup)
                elif not _still_there(key.fileobj):  # the caller is gone (SIGKILL): its step goes too
                    selector.unregister(key.fileobj)
                    _signal(key.data, signal.SIGTERM)
                    stopping_by[key.data] = time.monotonic() + STOP_GRACE_S
            _reap(selector, running)
            for pid, deadline in list(stopping_by.items()):
                if pid in running and time.monotonic() < deadline:
                    continue
                if pid in running:
                    _signal(pid, signal.SIGKILL)
                del stopping_by[pid]
        for pid in running:
            _Step(pid).stop()
    listener.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _still_there(connection: socket.socket) -> bool:
    try:
        return bool(connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _accept(listener, selector, running, startup: dict) -> None:
    connection, _ = listener.accept()
    connection.settimeout(REQUEST_TIMEOUT_S)  # a caller sends its request at once
    fds: list[int] = []
    try:
        header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, 3)
        (size,) = _HEADER.unpack(header)
        request = json.loads(_receive(connection, size))
        refused = _refusal(request, startup, fds)
    except (OSError, ValueError, KeyError, TypeError, struct.error):  # not one of ours, or it went away
        refused = "?"
    connection.settimeout(None)  # blocking again: the checks below must not wait
    if refused is not None or not _still_there(connection):
        if refused != "?":
            _answer(connection, {"refused": refused})
        for fd in fds:
            os.close(fd)
        connection.close()
        return
    worker = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    # A signal the command passes on as soon as it knows the pid waits until the child has the handlers a
    # cold process has (otherwise the worker's own SIGTERM handler would swallow it)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED_SIGNALS, signal.SIGTSTP))
    try:
        pid = os.fork()
    except OSError as error:  # out of processes or memory: the command runs itself
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        _answer(connection, {"refused": f"the worker could not fork ({error.strerror})"})
        for fd in fds:
            os.close(fd)
        connection.close()
        return
    if pid == 0:  # the child never returns into the worker's loop
        status = 1
        try:
            _die_with(worker)
            selector.close()
            listener.close()
            for other in [connection, *running.values()]:
                other.close()
            status = _run_child(request, fds, blocked)
        except BaseException:  # noqa: BLE001 - a child reports everything, then ends here
            traceback.print_exc()
        finally:
            os._exit(status)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for fd in fds:
        os.close(fd)
    _answer(connection, {"pid": pid})
    running[pid] = connection
    selector.register(connection, selectors.EVENT_READ, pid)


def _refusal(request: dict, startup: dict, fds: list[int]) -> str | None:
    if len(fds) != 3:
        return "its standard streams did not arrive"
    theirs = request["startup"]
    for key, what in (("python", "another interpreter or venv"), ("flags", "other interpreter options"),
                      ("warnoptions", "other warning options"), ("hashseed", "another PYTHONHASHSEED"),
                      ("cgroup", "another cgroup")):  # fmt: skip
        if theirs.get(key) != startup[key]:
            return f"{what} than the worker's"
    if theirs["env"] != startup["env"]:  # names only: values may be secrets
        differing = sorted(set(theirs["env"].items()) ^ set(startup["env"].items()))
        return f"its environment differs from the worker's in {', '.join(sorted({k for k, _ in differing}))}"
    return _shadowed(tuple(request["resolved_path"])) or _cannot_take(request["attributes"])


def _shadowed(path: tuple[str, ...]) -> str | None:
    """Whether the caller's `sys.path` would import a module the worker has loaded from another file (a
    PYTHONPATH that shadows an installed library). Cached per path."""
    if path not in SHADOW_CHECK_CACHE:
        from importlib.machinery import PathFinder

        SHADOW_CHECK_CACHE[path] = None
        for name, module in sorted(sys.modules.items()):
            loaded = getattr(module, "__spec__", None)
            if "." in name or name == "renalmae" or getattr(loaded, "name", None) != name:
                continue  # a submodule (its package is checked), an alias (__mp_main__), re-imported anyway
            if not loaded.has_location:
                continue  # built in, frozen, or a namespace package
            spec = PathFinder.find_spec(name, list(path))
            if spec is None or spec.origin != loaded.origin:
                SHADOW_CHECK_CACHE[path] = f"its sys.path imports {name} from elsewhere than the worker's"
                break
    return SHADOW_CHECK_CACHE[path]


def _die_with(worker: int) -> None:
    """Linux: the child gets SIGTERM when the worker dies (no orphan goes on writing outputs)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != worker:  # the worker died before the call
            os.kill(os.getpid(), signal.SIGTERM)


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


# ---------------------------------------------------------------- the child


def _run_child(request: dict, fds: list[int], mask: set) -> int:
    """In the forked child: become the caller's process, run `renalmae <argv>`, end as Python ends."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in request["ignored"]:
        signal.signal(signum, signal.SIG_IGN)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({key: value for key, value in request["env"].items() if key != ENV})
    time.tzset()
    _take_attributes(request["attributes"])
    sys.path[:] = request["path"]
    sys.argv = [request["argv0"], *request["argv"]]
    _reopen_stdio(request["streams"])
    _reseed()
    for name in [name for name in sys.modules if name == "renalmae" or name.startswith("renalmae.")]:
        del sys.modules[name]
    interrupted = False
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # signals sent since the fork are delivered here
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
    status = _flush_at_exit(status)
    if interrupted:  # a cold Python ends by SIGINT after an uncaught KeyboardInterrupt
        _end_by(signal.SIGINT)
    return status


def _take_attributes(attributes: dict) -> None:
    os.umask(attributes["umask"])
    os.setpriority(os.PRIO_PROCESS, 0, attributes["nice"])
    if attributes["affinity"] is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, attributes["affinity"])
    for limit, (soft, hard) in attributes["limits"].items():
        resource.setrlimit(int(limit), (soft, hard))
    if attributes["oom_score_adj"] is not None:
        with contextlib.suppress(OSError):
            Path("/proc/self/oom_score_adj").write_text(attributes["oom_score_adj"])


def _reopen_stdio(streams: list[dict]) -> None:
    """Text streams over fds 0-2 configured as the caller's were. The worker's own objects are kept alive:
    they own the descriptors."""
    _kept_streams.extend([sys.stdin, sys.stdout, sys.stderr])
    opened = []
    for fd, settings in enumerate(streams):
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]
        # an unbuffered caller's (`python -u`, PYTHONUNBUFFERED) binary layer is the raw file itself
        buffered = raw if settings["raw"] else io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        text = io.TextIOWrapper(
            buffered,
            encoding=settings["encoding"],
            errors=settings["errors"],
            line_buffering=settings["line_buffering"],
            write_through=settings["write_through"],
        )
        text.mode = "r" if fd == 0 else "w"  # as the interpreter names its own streams
        opened.append(text)
    sys.stdin, sys.stdout, sys.stderr = opened
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = opened


def _flush_at_exit(status: int) -> int:
    """Flush stdout and stderr as Python does at exit: a failed flush (a closed pipe) is reported on stderr
    and turns a success into status 120."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            stream.flush()
        except Exception as error:  # noqa: BLE001 - what the interpreter reports, whatever it is
            with contextlib.suppress(Exception):
                print(f"Exception ignored in: {stream!r}\n{type(error).__name__}: {error}", file=sys.stderr)
            status = status or 120
    return status


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
