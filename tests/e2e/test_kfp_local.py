"""The Kubeflow pipeline run end to end by kfp.local, and checked against `dvc repro` with the same params.

Both run the same step functions with the same seeds, so the comparison metrics must agree: the KFP
wrappers add nothing to the computation. MLflow tracking goes to a throw-away sqlite store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from renalmae.kfp_io import numeric_leaves

REPO = Path(__file__).resolve().parents[2]
PARAMS = Path(__file__).with_name("params-e2e.yaml")
BIN = Path(sys.executable).parent

# Minutes on 2 shared cores (the whole DAG plus a `dvc repro` to compare with): kept out of the default run.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(command: list[str], cwd: Path, timeout: int = 2400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(cwd)}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kfp-e2e")


@pytest.fixture(scope="module")
def params_file(work) -> Path:
    """The e2e params with tracking on, into a sqlite store of this test (register needs MLflow)."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw["tracking"] = {
        **raw.get("tracking", {}),
        "enabled": True,
        "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
    }
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def kfp_run(work, params_file) -> Path:
    """`renalmae pipeline run --local`; returns the run's directory under the pipeline root."""
    root = work / "kfp-root"
    result = _run([str(BIN / "renalmae"), "pipeline", "run", "--local", "--params", str(params_file),
                   "--root", str(root)], cwd=REPO)  # fmt: skip
    comparison = Path(result.stdout.strip().splitlines()[-1].strip())  # kfp.local indents what is printed
    assert comparison.is_dir(), result.stdout[-2000:]
    return comparison.parents[1]


@pytest.fixture(scope="module")
def dvc_comparison(work, params_file) -> Path:
    """`dvc repro compare` in a fresh git + DVC repository with the same params; returns its comparison."""
    repo = work / "dvc-repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    shutil.copy(params_file, repo / "params.yaml")
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run(["git", "init", "-q"], repo)
    _run([str(BIN / "dvc"), "init", "-q"], repo)
    _run([str(BIN / "dvc"), "repro", "compare"], repo)
    return repo / "reports" / "comparison"


def test_every_step_of_the_dag_ran_under_kfp_local(kfp_run):
    assert (kfp_run / "ingest" / "ingested" / "table.parquet").is_file()
    assert (kfp_run / "validate" / "validation" / "summary.json").is_file()
    for iteration in ("for-loop-1-iteration-0", "for-loop-1-iteration-1"):
        for step in ("finetune", "baseline"):
            assert (kfp_run / iteration / step / "model" / "predictions.parquet").is_file(), (iteration, step)
    assert (kfp_run / "compare" / "comparison" / "metrics.json").is_file()
    assert any((kfp_run / "explain" / "explanations").iterdir())
    registered = json.loads((kfp_run / "register" / "registered").read_text())
    assert registered["models"]


def test_kfp_and_dvc_ingest_and_split_the_same_way(kfp_run, dvc_comparison):
    dvc_repo = dvc_comparison.parents[1]

    for name in ("images.npy", "masks.npy"):
        kfp_bytes = (kfp_run / "ingest" / "ingested" / name).read_bytes()
        assert kfp_bytes == (dvc_repo / "data" / "ingested" / name).read_bytes(), name
    assert json.loads((kfp_run / "split" / "splits").read_text()) == json.loads(
        (dvc_repo / "data" / "splits.json").read_text()
    )


def test_kfp_and_dvc_give_the_same_comparison_metrics(kfp_run, dvc_comparison):
    kfp_metrics = json.loads((kfp_run / "compare" / "comparison" / "metrics.json").read_text())
    dvc_metrics = json.loads((dvc_comparison / "metrics.json").read_text())

    kfp_numbers, dvc_numbers = numeric_leaves(kfp_metrics), numeric_leaves(dvc_metrics)
    assert kfp_numbers.keys() == dvc_numbers.keys()
    assert kfp_numbers == pytest.approx(dvc_numbers, rel=1e-6, abs=1e-9)
