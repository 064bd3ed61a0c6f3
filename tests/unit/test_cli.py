"""The command line: every step is listed, and user errors print one line without a traceback."""

from __future__ import annotations

import subprocess
import sys

STEPS = ["ingest", "validate", "split", "pretrain", "finetune", "baseline", "compare", "explain", "register"]


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "renalmae.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_help_lists_every_step():
    result = run_cli("--help")
    assert result.returncode == 0
    for step in STEPS:
        assert step in result.stdout


def test_bad_params_give_one_clear_message_and_no_traceback(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  kfolds: 3\n")
    result = run_cli("split", "--params", str(params), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key `split.kfolds`" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_params_file_is_a_clear_error(tmp_path):
    result = run_cli("ingest", "--params", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.yaml not found" in result.stderr
    assert "Traceback" not in result.stderr
