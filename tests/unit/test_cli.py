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


def test_step_options_come_from_the_declaration():
    from renalmae.cli import build_parser

    parser = build_parser()
    finetune = parser._subparsers._group_actions[0].choices["finetune"]
    options = {action.dest: action for action in finetune._actions if action.option_strings}

    assert {"ingest_dir", "splits_path", "encoder_dir", "task", "fold", "repeat", "out_dir", "params"} <= set(
        options
    )
    assert options["encoder_dir"].option_strings == ["--encoder"]
    assert str(options["encoder_dir"].default) == "models/pretrain"
    assert [options[key].default for key in ("task", "fold", "repeat")] == [None, None, None]  # every one


def test_listing_the_steps_imports_none_of_them():
    """`renalmae --help` reads the declaration; importing the steps would load torch and MLflow."""
    code = (
        "import sys; from renalmae.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in sys.modules if m.startswith(('renalmae.steps.', 'torch', 'mlflow'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_step_runs_on_the_paths_given_on_the_command_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  source: phantom://renal?n=40&seed=0\n  pool: []\n  image_size: 32\n")

    result = run_cli("ingest", "--params", str(params), "--out", str(tmp_path / "ingested"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ingested" / "table.parquet").is_file()
    assert not (tmp_path / "data").exists()
    assert result.stdout == f"ingest: wrote {tmp_path / 'ingested'}\n"  # one line, no result dict


def test_validate_prints_where_its_report_is_not_its_result(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n  source: phantom://renal?n=40&seed=0\n  pool: []\n  image_size: 32\n"
        "validate:\n  min_images_per_class: 2\nsplit:\n  folds: [0, 1]\n"
    )
    assert run_cli("ingest", "--params", str(params), "--out", "ingested", cwd=tmp_path).returncode == 0

    result = run_cli("validate", "--params", str(params), "--ingest", "ingested", "--out", "v", cwd=tmp_path)

    assert result.stdout == "validate: wrote v\n", result.stdout[-2000:]
