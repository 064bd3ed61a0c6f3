"""Atomic outputs: a failing step leaves the outputs of the last good run untouched."""

from __future__ import annotations

from pathlib import Path

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


def run_until_ready_then_terminate(script: str, ready: Path, timeout: float = 300.0):
    """Run `script` in a fresh Python, wait for it to create `ready`, send SIGTERM; (exit code, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), f"the child never got ready: {child.communicate()[1][-2000:]}"
    os.kill(child.pid, signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    return child.returncode, stderr


def test_sigterm_removes_the_staging_folder_and_keeps_what_lies_beside_it(tmp_path):
    script = f"""
import pathlib, time
from renalmae.io import atomic_dir
out = pathlib.Path({str(tmp_path / "probe_fold0")!r})
(out.parent / ".checkpoints").mkdir()
(out.parent / ".checkpoints" / "latest.pt").write_text("step 6")  # what resumes the run
with atomic_dir(out) as staging:
    (staging / "half.txt").write_text("half written")
    (out.parent / "ready").touch()
    time.sleep(120)
"""
    code, stderr = run_until_ready_then_terminate(script, tmp_path / "ready")
    assert code == 128 + 15 and "Traceback" not in stderr, stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".checkpoints", "ready"]
    assert (tmp_path / ".checkpoints" / "latest.pt").read_text() == "step 6"


@pytest.mark.slow
def test_pretrain_killed_by_sigterm_leaves_no_temporary_output_and_keeps_its_checkpoint(tmp_path):
    train_tests = Path(__file__).parent / "train"
    script = f"""
import pathlib, sys, time
sys.path.insert(0, {str(train_tests)!r})
from trainkit import make_dataset, tiny_params
from renalmae.steps import pretrain
import renalmae.train.checkpoint as checkpoint

root = pathlib.Path({str(tmp_path)!r})
ingest_dir, splits_path = make_dataset(root)
save = checkpoint.save_checkpoint
def save_then_wait(directory, state):  # the first checkpoint is written: the run can be resumed now
    path = save(directory, state)
    (root / "ready").touch()
    time.sleep(120)
    return path
checkpoint.save_checkpoint = save_then_wait
params = tiny_params(pretrain={{"epochs": 50}})
pretrain.run(params, ingest_dir, splits_path, root / "pretrain")
"""
    code, stderr = run_until_ready_then_terminate(script, tmp_path / "ready")
    assert code == 128 + 15, stderr[-2000:]
    assert not list(tmp_path.glob(".pretrain.tmp-*")) and not (tmp_path / "pretrain").exists()
    assert list((tmp_path / ".checkpoints").rglob("latest.pt")), "the checkpoint that resumes the run stays"


# --- issue 26 kind 7: a killed writer's temporary output is swept by the next writer --------------------

WRITER = """
import sys, time
from renalmae.io import atomic_dir
with atomic_dir(sys.argv[1]) as staging:
    (staging / "part.bin").write_bytes(bytes(1 << 20))
    print(staging, flush=True)
    time.sleep(60)
"""


def start_writer(out_dir: Path):
    """A process writing `out_dir` through `atomic_dir`, stopped mid-way; returns it and its staging dir."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    staging = Path(writer.stdout.readline().strip())
    assert staging.is_dir() and staging.parent == out_dir.parent
    return writer, staging


def test_staging_dir_of_a_killed_writer_is_swept_by_the_next_run(tmp_path):
    out_dir = tmp_path / "ingested"
    writer, staging = start_writer(out_dir)
    writer.kill()  # SIGKILL: nothing of the writer's own cleanup runs
    writer.wait()
    assert staging.is_dir()
    with atomic_dir(out_dir) as new_staging:
        (new_staging / "table.json").write_text("{}")
    assert not staging.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ingested"]


def test_staging_dir_of_a_live_concurrent_writer_is_never_removed(tmp_path):
    from renalmae.io import sweep_leftovers

    out_dir = tmp_path / "ingested"
    writer, staging = start_writer(out_dir)
    try:
        with atomic_dir(out_dir) as new_staging:
            (new_staging / "table.json").write_text("{}")
        assert sweep_leftovers(out_dir) == []
        assert (staging / "part.bin").is_file()
    finally:
        writer.kill()
        writer.wait()
    assert sweep_leftovers(out_dir) == [staging]


def test_temporary_paths_of_unknown_owner_or_another_host_are_left_alone(tmp_path):
    from renalmae.io import sweep_leftovers

    legacy = tmp_path / ".ingested.tmp-k2j3h4"  # named before writers were recorded: owner unknown
    elsewhere = tmp_path / ".ingested.tmp-1.1.00@another-node@x1"  # a writer on another host (shared volume)
    other_output = tmp_path / ".ingested-old.tmp-1.1.00@x@y"
    for path in (legacy, elsewhere, other_output):
        path.mkdir()
    assert sweep_leftovers(tmp_path / "ingested") == []
    assert legacy.is_dir() and elsewhere.is_dir() and other_output.is_dir()


def test_temporary_file_of_a_dead_writer_is_swept_by_the_next_atomic_file(tmp_path):
    import socket

    path = tmp_path / "splits.json"
    dead = tmp_path / f".splits.json.tmp-999999999.12.00@{socket.gethostname()}@abc"  # no such process
    dead.write_text("{half")
    write_json(path, {"version": 2})
    assert not dead.exists() and read_json(path) == {"version": 2}
