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
from comparekit import splits_of, write_prediction_runs

pytestmark = pytest.mark.integration


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def compared_project(repo_root, tmp_path_factory):
    """A scratch git + DVC project holding the compare stage only, reproduced once."""
    if shutil.which("git") is None:
        pytest.skip("git is needed for a scratch DVC project")
    project = tmp_path_factory.mktemp("compare-dvc") / "project"
    project.mkdir()
    pipeline = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    stage = pipeline["stages"]["compare"]
    pipeline["stages"] = {"compare": stage}  # models/ are plain files here, not upstream outputs
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = (
        (repo_root / "params.yaml")
        .read_text()
        .replace("bootstrap_resamples: 2000", "bootstrap_resamples: 200")
    )
    (project / "params.yaml").write_text(params)
    for dependency in (d for d in stage["deps"] if d.startswith("src/")):
        source, target = repo_root / dependency, project / dependency
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    write_prediction_runs(project / "models")
    (project / "data").mkdir()
    shutil.move(splits_of(project / "models"), project / "data" / "splits.json")  # where the stage reads it
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        assert _run(command, project).returncode == 0
    repro = _run([sys.executable, "-m", "dvc", "repro", "--single-item", "compare"], project)
    assert repro.returncode == 0, repro.stderr[-2000:]
    return project


def test_dvc_repro_compare_then_metrics_and_plots_show(compared_project):
    project = compared_project
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project)
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)[""]["data"]["reports/comparison/metrics.json"]["data"]
    assert metrics["binary"]["usfmae"]["test_auc"] > metrics["binary"]["densenet169"]["test_auc"]
    assert 0.0 <= metrics["binary"]["test_delong_p_holm"] <= 1.0
    # per class; an undefined p (null: perfect separation on 40 images) DVC leaves out
    per_class = [v for key, v in metrics["multiclass"].items() if key.startswith("test_delong_p_holm_")]
    assert per_class and all(0.0 <= value <= 1.0 for value in per_class)

    plots = _run([sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"], project)
    assert plots.returncode == 0, plots.stderr
    page = (project / "dvc_plots" / "index.html").read_text()
    assert "roc_binary_usfmae.csv" in page and "pr_multiclass_densenet169.csv" in page
    assert (
        _run([sys.executable, "-m", "dvc", "status", "compare"], project)
        .stdout.strip()
        .endswith("up to date.")
    )


def test_dvc_exp_run_then_exp_show_and_metrics_diff_show_the_headline_metrics(compared_project):
    """`dvc exp run -S key=value`, then `dvc exp show` / `dvc metrics diff` tabulate AUC, F1,
    sensitivity, specificity and the declared DeLong Holm p for the commit and the experiment (no `!`)."""
    project = compared_project
    for command in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "compare"],
    ):
        assert _run(command, project).returncode == 0
    experiment = [sys.executable, "-m", "dvc", "exp", "run", "--single-item", "compare"]
    experiment += ["--name", "sensitivity-rule", "-S", "evaluate.threshold=sensitivity"]
    ran = _run(experiment, project)
    assert ran.returncode == 0, ran.stderr[-2000:]

    shown = _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], project)
    assert shown.returncode == 0, shown.stderr
    commit = next(rev for rev in json.loads(shown.stdout) if rev["rev"] != "workspace")
    (experiment_rev,) = commit["experiments"][0]["revs"]
    assert experiment_rev["name"] == "sensitivity-rule"
    for rev in (commit, experiment_rev):
        headline = rev["data"]["metrics"]["reports/comparison/metrics.json"]["data"]
        assert 0.0 <= headline["binary"]["test_delong_p_holm"] <= 1.0
        per_class = [v for key, v in headline["multiclass"].items() if key.startswith("test_delong_p_holm_")]
        defined = [value for value in per_class if value is not None]  # null: undefined (perfect separation)
        assert defined and all(0.0 <= value <= 1.0 for value in defined)
        for task in ("binary", "multiclass"):
            for model in ("usfmae", "densenet169"):
                assert set(headline[task][model]) == {
                    "test_auc",
                    "test_f1",
                    "test_sensitivity",
                    "test_specificity",
                }

    diff = _run(
        [sys.executable, "-m", "dvc", "metrics", "diff", "HEAD", "sensitivity-rule", "--json"], project
    )
    assert diff.returncode == 0, diff.stderr
    changed = json.loads(diff.stdout)["reports/comparison/metrics.json"]
    # the decision rule moved the operating point (of the weaker model here: the stronger one separates the
    # synthetic holdout so well that both rules give it the same sensitivity); AUC does not depend on it
    assert {"binary.densenet169.test_sensitivity", "binary.densenet169.test_specificity"} <= set(changed)
    assert not [key for key in changed if key.endswith("_auc")]
