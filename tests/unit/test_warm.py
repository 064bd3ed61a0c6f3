"""The warm worker (`renalmae warm`): a command forked from it behaves as a cold `renalmae` process does.

The worker here preloads only `json` (the real one, torch & co., runs the e2e `dvc repro`, whose outputs
tests/e2e/test_kfp_local.py compares with the cold processes of the KFP DAG)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from renalmae import warm

REPO_ROOT = Path(__file__).resolve().parents[2]
RENALMAE = [sys.executable, "-m", "renalmae.cli"]
FACTS_CLI = """
import json, os, resource, signal, sys, time
from renalmae import warm

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    status = warm.forward(argv)
    if status is not None:
        return status
    print(json.dumps({
        "pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "tzname": list(time.tzname), "argv0": sys.argv[0],
        "stdout": [sys.stdout.encoding, sys.stdout.errors], "umask": os.umask(0o22),
        "sighup_ignored": signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, "cwd": os.getcwd(),
        "env": os.environ.get("RENALMAE_TEST_VALUE"), "worker_env": os.environ.get("RENALMAE_WORKER"),
    }), flush=True)
    if argv[:1] == ["sleep"]:
        time.sleep(float(argv[1]))
    return 0

if __name__ == "__main__":
    sys.exit(main())
"""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def session_env() -> dict[str, str]:
    """This session's environment as a command gets it: without a worker, and without pytest's per-test
    PYTEST_CURRENT_TEST (a worker serves only callers whose environment equals its own)."""
    return {k: v for k, v in os.environ.items() if k not in (warm.ENV, "PYTEST_CURRENT_TEST")}


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def worker_in(folder: Path, env: dict[str, str] | None = None):
    """(pid, socket path) of a worker that preloads `json`, started in `env` (its callers' environment must
    equal it to be served)."""
    path = str(folder / "socket")
    env = {key: value for key, value in (env or session_env()).items() if key != warm.ENV}
    process = subprocess.Popen(
        [sys.executable, "-m", "renalmae.warm", path, "json"], env=env, start_new_session=True
    )
    assert warm.wait_until_ready(path), "the worker never listened"
    try:
        yield process.pid, path
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not Path(path).exists(), "the worker left its socket behind"


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """A worker started in this test session's environment."""
    with worker_in(tmp_path_factory.mktemp("worker")) as started:
        yield started


NOT_SERVED = "not run by the warm worker"


@pytest.fixture(scope="module")
def facts_cli(tmp_path_factory) -> dict[str, str]:
    """The environment of a `renalmae.cli` that prints what its process has (nice, affinity, limits, time
    zone, stream settings, ...) instead of running a step: run cold and in the worker, the two must agree.
    It shadows the real `renalmae.cli` on PYTHONPATH; the child of the worker imports it the same way."""
    import renalmae

    root = tmp_path_factory.mktemp("facts") / "renalmae"
    root.mkdir()
    (root / "__init__.py").write_text(
        f"__path__ = [{str(root)!r}, {str(Path(renalmae.__file__).parent)!r}]\n"
    )
    (root / "cli.py").write_text(FACTS_CLI)
    return {**session_env(), "PYTHONPATH": str(root.parent)}


def run(command, env_worker: str | None, **kwargs) -> subprocess.CompletedProcess:
    env = {key: value for key, value in kwargs.pop("env", session_env()).items() if key != warm.ENV}
    if env_worker:
        env[warm.ENV] = env_worker
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, **kwargs)


def test_a_command_in_the_worker_prints_and_exits_as_a_cold_one(worker, tmp_path):
    """Stdout, stderr and the exit status come back through the caller's own descriptors; the params path is
    read relative to the caller's working directory."""
    (tmp_path / "broken.yaml").write_text("data: [unclosed\n")
    seen = {}
    for command in (["split", "--help"], ["split", "--params", "broken.yaml"], ["no-such-step"]):
        cold = run([*RENALMAE, *command], None, cwd=tmp_path)
        warmed = run([*RENALMAE, *command], worker[1], cwd=tmp_path)
        outcome = (warmed.returncode, warmed.stdout, warmed.stderr)
        assert outcome == (cold.returncode, cold.stdout, cold.stderr)
        seen[command[-1]] = warmed
    assert seen["--help"].returncode == 0 and "usage: renalmae split" in seen["--help"].stdout
    assert seen["broken.yaml"].returncode != 0 and "broken.yaml: not valid YAML" in seen["broken.yaml"].stderr
    assert seen["no-such-step"].returncode == 2


def test_a_command_whose_environment_differs_runs_in_its_own_process(worker, tmp_path):
    """Libraries read some variables when they are imported (in the worker, before the fork): a command with
    another environment is not served, and the message names the variable, never its value."""
    env = {**session_env(), "RENALMAE_IMAGE_TAG": "secret-looking-value", warm.ENV: worker[1]}
    result = subprocess.run(
        [*RENALMAE, "split", "--help"], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0 and "usage: renalmae split" in result.stdout
    assert f"{NOT_SERVED} (its environment differs from the worker's in RENALMAE_IMAGE_TAG)" in result.stderr
    assert "secret-looking-value" not in result.stderr
    shell_and_dvc = {**env, "PWD": str(tmp_path), "SHLVL": "7", "DVC_STAGE": "train@1", "DVC_ROOT": "/x",
                     "PATH": f"/opt/elsewhere/bin:{env['PATH']}"}  # fmt: skip
    shell_and_dvc.pop("RENALMAE_IMAGE_TAG")
    served = subprocess.run([*RENALMAE, "split", "--help"], env=shell_and_dvc, capture_output=True, text=True)
    assert served.returncode == 0 and NOT_SERVED not in served.stderr  # per-process variables may differ


def test_a_sys_path_that_shadows_a_preloaded_module_runs_the_command_in_its_own_process(worker, tmp_path):
    import shutil

    shutil.copytree(Path(json.__file__).parent, tmp_path / "json")  # a working copy, in another file
    result = run([*RENALMAE, "split", "--help"], worker[1], cwd=tmp_path)  # `-m` puts the cwd on sys.path
    assert f"{NOT_SERVED} (its sys.path imports json from elsewhere than the worker's)" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_the_step_stops_with_its_command(worker, tmp_path, signum):
    """SIGTERM and SIGINT reach the step and the command ends by the same signal, as DVC sees a cold process
    end (a cold Python ends by SIGINT after an uncaught KeyboardInterrupt); a command killed outright
    (SIGKILL: nothing to pass on) still stops its step in the worker: no orphan keeps working."""
    caller = subprocess.Popen(
        [*RENALMAE, "pipeline", "compile", "--output", str(tmp_path / "p.yaml")], cwd=REPO_ROOT,
        env={**session_env(), warm.ENV: worker[1]}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert wait_for(lambda: children_of(worker[0]))
    caller.send_signal(signum)
    caller.wait(timeout=60)

    assert caller.returncode == -signum
    assert wait_for(lambda: not children_of(worker[0])), "the step kept running after its command ended"
    assert not (tmp_path / "p.yaml").exists()


def test_a_worker_of_another_python_is_not_used(worker, monkeypatch, capsys):
    monkeypatch.setenv(warm.ENV, worker[1])
    monkeypatch.setattr(sys, "prefix", "/elsewhere/venv")

    assert warm.forward(["split", "--help"]) is None
    expected = "not run by the warm worker (another interpreter or venv than the worker's)"
    assert expected in capsys.readouterr().err


def test_without_a_listening_worker_the_command_runs_itself(tmp_path, monkeypatch):
    monkeypatch.setenv(warm.ENV, str(tmp_path / "not-yet"))
    assert warm.forward(["split", "--help"]) is None
    monkeypatch.delenv(warm.ENV)
    assert warm.forward(["split", "--help"]) is None


def test_renalmae_warm_returns_the_commands_status_and_stops_its_worker(tmp_path):
    result = run([*RENALMAE, "warm", "--", "sh", "-c", f'echo "${warm.ENV}"; exit 7'], None, cwd=tmp_path)

    assert result.returncode == 7, result.stderr
    socket_path = Path(result.stdout.strip())
    assert socket_path.name == "socket"
    assert not socket_path.parent.exists(), "the worker's folder outlived the command"
    workers = [
        entry for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and str(socket_path).encode() in _cmdline(entry)
    ]  # fmt: skip
    assert not workers, "the worker outlived the command"


def test_renalmae_warm_without_a_command_says_what_to_run(tmp_path):
    result = run([*RENALMAE, "warm"], None, cwd=tmp_path)
    assert result.returncode == 2
    assert "renalmae warm -- dvc repro" in result.stderr


def test_renalmae_warm_with_an_unknown_command_names_it(tmp_path):
    result = run([*RENALMAE, "warm", "--", "dvcc", "repro"], None, cwd=tmp_path)
    assert result.returncode == 127
    assert "renalmae warm: dvcc: command not found" in result.stderr
    assert "Traceback" not in result.stderr


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def _as_a_user_would(nice: int = 3):
    """A caller with its own nice value, one CPU, a lower open-files limit and SIGHUP ignored (nohup)."""
    import resource

    os.nice(nice)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.umask(0o027)


def test_the_step_gets_what_a_process_of_its_own_would_have(facts_cli, tmp_path):
    env = {**facts_cli, "TZ": "JST-9", "PYTHONIOENCODING": "utf-8:replace", "RENALMAE_TEST_VALUE": "caller"}
    results = {}
    with worker_in(tmp_path, env) as (_, path):
        for where, worker_path in (("cold", None), ("warm", path)):
            caller_env = {**env, **({warm.ENV: worker_path} if worker_path else {})}
            process = subprocess.Popen(
                [*RENALMAE, "facts"], cwd=tmp_path, env=caller_env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_a_user_would,
            )  # fmt: skip
            stdout, stderr = process.communicate(timeout=120)
            assert process.returncode == 0 and NOT_SERVED not in stderr, stderr
            results[where] = {**json.loads(stdout), "caller": process.pid}

    cold, warmed = results["cold"], results["warm"]
    assert cold.pop("pid") == cold.pop("caller")
    assert warmed.pop("pid") != warmed.pop("caller"), "the command was not run by the worker"
    assert warmed == cold
    assert cold["nice"] >= 3 and len(cold["affinity"]) == 1 and cold["nofile"][0] <= 256
    assert (
        cold["tzname"] == ["JST", "JST"] and cold["stdout"] == ["utf-8", "replace"] and cold["umask"] == 0o027
    )
    assert cold["sighup_ignored"] and cold["env"] == "caller" and cold["worker_env"] is None


def test_other_interpreter_options_run_the_command_in_its_own_process(facts_cli, tmp_path):
    with worker_in(tmp_path, facts_cli) as (_, path):
        env = {**facts_cli, warm.ENV: path, "PYTHONOPTIMIZE": "1"}
        process = subprocess.run([*RENALMAE, "facts"], cwd=tmp_path, env=env, capture_output=True, text=True)

    assert process.returncode == 0, process.stderr
    assert f"{NOT_SERVED} (other interpreter options than the worker's)" in process.stderr
    assert json.loads(process.stdout)["worker_env"] == path  # it ran here, where ENV is still set


def test_a_command_ignoring_sighup_outlives_it_as_a_cold_one_does(worker, tmp_path):
    """`nohup renalmae ...` (or `nohup make run`) must survive a closed terminal in the worker too."""
    caller = subprocess.Popen(
        [*RENALMAE, "pipeline", "compile", "--output", str(tmp_path / "p.yaml")], cwd=REPO_ROOT,
        env={**session_env(), warm.ENV: worker[1]}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    assert wait_for(lambda: children_of(worker[0]))
    caller.send_signal(signal.SIGHUP)
    _, stderr = caller.communicate(timeout=300)

    assert caller.returncode == 0, stderr
    assert (tmp_path / "p.yaml").is_file()


def test_a_step_whose_worker_dies_is_stopped_and_its_command_fails(facts_cli, tmp_path):
    path = str(tmp_path / "socket")
    lone = subprocess.Popen(
        [sys.executable, "-m", "renalmae.warm", path, "json"], env=facts_cli, start_new_session=True
    )
    assert warm.wait_until_ready(path)
    caller = subprocess.Popen(
        [*RENALMAE, "sleep", "60"], cwd=tmp_path, env={**facts_cli, warm.ENV: path},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    step = json.loads(caller.stdout.readline())["pid"]
    assert step != caller.pid
    lone.kill()
    lone.wait()
    _, stderr = caller.communicate(timeout=60)

    assert caller.returncode == 1
    assert f"the warm worker ended before the step did; stopping it (pid {step})" in stderr
    assert wait_for(lambda: not Path(f"/proc/{step}").exists()), "the step went on without its worker"


def test_a_step_ignoring_sigterm_is_killed_when_its_command_is(facts_cli, tmp_path):
    """A caller that ignores SIGTERM (`trap '' TERM`) passes that on; when it is SIGKILLed its step would
    have died with it cold: the worker sends SIGTERM, then SIGKILL after STOP_GRACE_S."""
    with worker_in(tmp_path, facts_cli) as (_, path):
        caller = subprocess.Popen(
            [*RENALMAE, "sleep", "120"], cwd=tmp_path, env={**facts_cli, warm.ENV: path},
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
        )  # fmt: skip
        step = json.loads(caller.stdout.readline())["pid"]
        assert step != caller.pid
        caller.kill()
        caller.wait()
        assert wait_for(lambda: not children_of_alive(step), timeout_s=warm.STOP_GRACE_S + 20)


def children_of_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_removed_working_directory_runs_the_command_in_its_own_process(worker, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -m renalmae.cli split --help'
    result = run(["sh", "-c", script], worker[1])
    assert result.returncode == 0 and "usage: renalmae split" in result.stdout, result.stderr


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
@pytest.mark.parametrize("command", [["split", "--help"], ["no-such-step"]], ids=["help", "error"])
def test_a_closed_pipe_ends_the_command_as_it_ends_a_cold_one(command, unbuffered, tmp_path):
    env = {key: value for key, value in session_env().items() if key != "PYTHONUNBUFFERED"}
    env |= {"PYTHONUNBUFFERED": unbuffered} if unbuffered else {}
    outcomes = []
    with worker_in(tmp_path, env) as (_, path):
        for worker_path in (None, path):
            read_end, write_end = os.pipe()
            os.close(read_end)
            process = subprocess.run(
                [*RENALMAE, *command], env={**env, **({warm.ENV: worker_path} if worker_path else {})},
                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
            )  # fmt: skip
            os.close(write_end)
            assert NOT_SERVED not in process.stderr
            outcomes.append((process.returncode, "BrokenPipeError" in process.stderr))
    assert outcomes[1] == outcomes[0]


def test_sigterm_to_renalmae_warm_reaches_the_command_and_stops_the_worker(tmp_path):
    caller = subprocess.Popen(
        [*RENALMAE, "warm", "--", "sh", "-c", f'echo "${warm.ENV}"; exec sleep 60'], cwd=tmp_path,
        env=session_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    socket_path = Path(caller.stdout.readline().strip())
    caller.send_signal(signal.SIGTERM)
    caller.wait(timeout=60)

    assert caller.returncode == -signal.SIGTERM  # as `dvc repro` itself ended
    assert not socket_path.parent.exists()
    assert not [
        e for e in Path("/proc").iterdir() if e.name.isdigit() and str(socket_path).encode() in _cmdline(e)
    ]


def test_ctrl_c_reaches_the_command_of_renalmae_warm(tmp_path):
    """Ctrl-C goes to the terminal's foreground process group: COMMAND must not inherit an ignored SIGINT
    (it would no longer stop `dvc repro`), and `renalmae warm` ends as COMMAND ended."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    result = run([*RENALMAE, "warm", "--", sys.executable, "-c", probe], None, cwd=tmp_path)
    assert result.stdout.strip() == "True", result.stderr

    group = subprocess.Popen(
        [*RENALMAE, "warm", "--", "sh", "-c", f'echo "${warm.ENV}"; exec sleep 60'], cwd=tmp_path,
        env=session_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    socket_path = Path(group.stdout.readline().strip())
    os.killpg(group.pid, signal.SIGINT)  # what the terminal does
    group.wait(timeout=60)
    assert group.returncode == -signal.SIGINT
    assert not socket_path.parent.exists()


def test_a_nested_renalmae_warm_ends_as_its_command_ended(tmp_path):
    result = run([*RENALMAE, "warm", "--", *RENALMAE, "warm", "--", "sh", "-c", "kill -TERM $$"], None)
    assert result.returncode == -signal.SIGTERM, result.stderr


def test_signals_ignored_by_renalmae_warm_stay_ignored_for_its_command(tmp_path):
    """`nohup make run &` then logging out: `dvc repro` must still ignore SIGHUP, as without the worker."""
    probe = "import signal; print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)"
    result = subprocess.run(
        [*RENALMAE, "warm", "--", sys.executable, "-c", probe], cwd=tmp_path, env=session_env(),
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    assert result.stdout.strip() == "True", result.stderr
