"""The warm worker (`renalmae warm`): a command forked from it behaves as a cold `renalmae` process does.

The worker here preloads only `json` (the real one, torch & co., runs the e2e `dvc repro`, whose outputs
tests/e2e/test_kfp_local.py compares with the cold processes of the KFP DAG)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from renalmae import warm

REPO_ROOT = Path(__file__).resolve().parents[2]
RENALMAE = [sys.executable, "-m", "renalmae.cli"]


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


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """(pid, socket path) of a worker that preloads `json`."""
    path = str(tmp_path_factory.mktemp("worker") / "socket")
    process = subprocess.Popen([sys.executable, "-m", "renalmae.warm", path, "json"], start_new_session=True)
    assert warm.wait_until_ready(path), "the worker never listened"
    yield process.pid, path
    process.terminate()
    process.wait(timeout=30)
    assert not Path(path).exists(), "the worker left its socket behind"


def run(command, env_worker: str | None, **kwargs) -> subprocess.CompletedProcess:
    env = {key: value for key, value in kwargs.pop("env", os.environ).items() if key != warm.ENV}
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


def test_the_command_runs_in_a_child_of_the_worker_with_the_callers_environment(worker, tmp_path):
    """The image tag is read from the environment when the components are imported: in the child, from the
    caller's environment, not the worker's."""
    env = {**os.environ, "RENALMAE_IMAGE": "registry.example.org/renalmae", "RENALMAE_IMAGE_TAG": "warm42"}
    caller = subprocess.Popen(
        [*RENALMAE, "pipeline", "compile", "--output", str(tmp_path / "p.yaml")], cwd=REPO_ROOT,
        env={**env, warm.ENV: worker[1]}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_for(lambda: children_of(worker[0]) or caller.poll() is not None)
    assert children_of(worker[0]), "the worker never forked a child for the command"
    stdout, stderr = caller.communicate(timeout=300)
    assert caller.returncode == 0, stderr
    executors = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "registry.example.org/renalmae:warm42-cpu", "registry.example.org/renalmae:warm42-cuda",
    }  # fmt: skip
    assert warm.ENV not in stdout + stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_the_step_stops_with_its_command(worker, tmp_path, signum):
    """SIGTERM and SIGINT reach the step and the command ends by the same signal, as DVC sees a cold process
    end (a cold Python ends by SIGINT after an uncaught KeyboardInterrupt); a command killed outright
    (SIGKILL: nothing to pass on) still stops its step in the worker: no orphan keeps working."""
    caller = subprocess.Popen(
        [*RENALMAE, "pipeline", "compile", "--output", str(tmp_path / "p.yaml")], cwd=REPO_ROOT,
        env={**os.environ, warm.ENV: worker[1]}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
    assert "the warm worker did not run the command: it runs" in capsys.readouterr().err


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
