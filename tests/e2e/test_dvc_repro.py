"""`dvc repro` of the pipeline in a fresh git + DVC repository, with the tiny e2e parameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from renalmae.data.predictions import read_predictions

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


@pytest.mark.e2e
def test_dvc_repro_trains_every_fold_task_and_model(pipeline_runs):
    pipeline_repo = pipeline_runs.dvc_repo  # after `dvc repro compare` (tests/e2e/conftest.py)
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
