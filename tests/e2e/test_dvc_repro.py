"""`dvc repro` of the pipeline in a fresh git + DVC repository, with the tiny e2e parameters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from renalmae.data.predictions import read_predictions

REPO = Path(__file__).resolve().parents[2]
PARAMS = Path(__file__).with_name("params-e2e.yaml")
DVC = str(Path(sys.executable).with_name("dvc"))


def _run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ.get('PATH', '')}"
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": env_path, "HOME": str(cwd)},
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory) -> Path:
    """A git + DVC repository with the project's dvc.yaml, the e2e params and the sources stages hash."""
    repo = tmp_path_factory.mktemp("pipeline")
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    shutil.copy(PARAMS, repo / "params.yaml")
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run(["git", "init", "-q"], repo)
    _run([DVC, "init", "-q"], repo)
    return repo


@pytest.mark.e2e
def test_dvc_repro_trains_every_fold_task_and_model(pipeline_repo):
    _run([DVC, "repro", "baseline", "finetune"], pipeline_repo)
    for model, root in (("usfmae", "finetune"), ("densenet169", "baseline")):
        for fold in (0, 1):
            run_dir = pipeline_repo / "models" / root / "binary" / f"fold{fold}"
            table = read_predictions(run_dir / "predictions.parquet", ["normal", "anomaly"])
            assert set(table["split"]) == {"val", "test"}
            assert (table["model"] == model).all() and (table["fold"] == fold).all()
            assert (run_dir / "metrics.json").is_file()
    assert (pipeline_repo / "models" / "pretrain" / "encoder.safetensors").is_file()
    status = _run([DVC, "status", "baseline", "finetune"], pipeline_repo)
    assert "changed" not in status.stdout, status.stdout
