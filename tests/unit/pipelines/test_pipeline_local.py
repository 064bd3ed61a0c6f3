"""`python -m pipelines run --local`: a failing step makes the command fail with a pointer to the outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


def checkout_env(home: Path) -> dict[str, str]:
    """`python -m pipelines` runs from the checkout (the DAG is not part of the installed package): its root
    on the path, as a user's `cd` to it gives, while the run's files go to a temporary folder."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HOME": str(home), "PYTHONPATH": path}


def test_a_failing_step_fails_the_local_run_with_a_clear_message(tmp_path):
    params = tmp_path / "params.yaml"
    missing_source = tmp_path / "no-such-folder"
    params.write_text(
        yaml.safe_dump({"data": {"source": str(missing_source), "pool": []}, "tracking": {"enabled": False}})
    )
    root = tmp_path / "kfp-root"

    command = ["run", "--local", "--params", str(params), "--root", str(root)]
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", *command],
        cwd=tmp_path, env=checkout_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        f"the local pipeline run failed; the failing task's log is above and its files are under {root}"
        in (result.stderr)
    )
    assert "Inner task failed" in result.stdout + result.stderr and "ingest" in result.stdout + result.stderr
    assert not list(root.glob("renalmae-*/compare"))


def test_data_that_fails_validation_stops_the_run_and_keeps_the_report_that_says_why(tmp_path):
    """KFP uploads nothing of a failed task: validate succeeds with a status, and split refuses the data."""
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({
            "data": {"source": "phantom://renal?n=30&seed=0", "pool": [], "image_size": 32},
            "validate": {"min_images_per_class": 1000}, "tracking": {"enabled": False},
        })
    )  # fmt: skip
    root = tmp_path / "kfp-root"

    command = ["run", "--local", "--params", str(params), "--root", str(root)]
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", *command],
        cwd=tmp_path, env=checkout_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr[-3000:]
    assert "data validation failed" in result.stdout + result.stderr
    (page,) = root.glob("renalmae-*/validate/report")  # the validate task succeeded: its outputs are kept
    assert "class_min_images" in page.read_text()
    assert not list(root.glob("renalmae-*/**/splits")), "split refused the failed validation: nothing trained"
