"""`dvc repro compare` in a scratch DVC project; then `dvc metrics show` and `dvc plots show` work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from comparekit import write_prediction_runs

pytestmark = pytest.mark.integration


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def test_dvc_repro_compare_then_metrics_and_plots_show(repo_root, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed for a scratch DVC project")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(repo_root / "dvc.yaml", project)
    params = (
        (repo_root / "params.yaml")
        .read_text()
        .replace("bootstrap_resamples: 2000", "bootstrap_resamples: 200")
    )
    (project / "params.yaml").write_text(params)
    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["compare"]
    for dependency in (d for d in stage["deps"] if d.startswith("src/")):
        source, target = repo_root / dependency, project / dependency
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    write_prediction_runs(project / "models")
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        assert _run(command, project).returncode == 0

    repro = _run([sys.executable, "-m", "dvc", "repro", "--single-item", "compare"], project)
    assert repro.returncode == 0, repro.stderr[-2000:]
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project)
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)[""]["data"]["reports/comparison/metrics.json"]["data"]
    assert metrics["binary"]["usfmae"]["test_auc"] > metrics["binary"]["densenet169"]["test_auc"]
    assert "delong_p" in metrics["multiclass"]

    plots = _run([sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"], project)
    assert plots.returncode == 0, plots.stderr
    page = (project / "dvc_plots" / "index.html").read_text()
    assert "roc_binary_usfmae.csv" in page and "pr_multiclass_densenet169.csv" in page
    assert (
        _run([sys.executable, "-m", "dvc", "status", "compare"], project)
        .stdout.strip()
        .endswith("up to date.")
    )
