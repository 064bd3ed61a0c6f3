"""The pipeline run once for every e2e test: `dvc repro` and the Kubeflow DAG under kfp.local, side by side.

Both run tests/e2e/params-e2e.yaml with tracking on (register needs MLflow), each into a sqlite store of
its own, and are started together: each is one process at a time on one torch thread, so on two cores the
pair takes about as long as the slower of the two (the suite's budget, issue 18). `dvc repro` runs as
`make run` runs it (one process per stage; a training stage trains every task and fold), the DAG's
tasks one per training run: tests/e2e/test_kfp_local.py holds the two to the same results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PARAMS = Path(__file__).with_name("params-e2e.yaml")
BIN = Path(sys.executable).parent
TIMEOUT_S = 2400


@dataclass(frozen=True)
class PipelineRuns:
    """Where the two runs of the same params left their outputs."""

    dvc_repo: Path  # a git + DVC repository after `dvc repro compare`
    kfp_output: str  # what `python -m pipelines run --local` printed, ending with its comparison folder
    kfp_error: str  # why the kfp.local run failed ("" when it did not): only the kfp tests fail then

    @property
    def kfp_run(self) -> Path:
        """The kfp.local run's directory under its pipeline root (one folder per task)."""
        assert not self.kfp_error, self.kfp_error
        comparison = Path(self.kfp_output.strip().splitlines()[-1].strip())  # kfp.local indents its prints
        assert comparison.is_dir(), self.kfp_output[-2000:]
        return comparison.parents[1]


def tracked_params(directory: Path) -> Path:
    """The e2e params with tracking on, into `directory`/mlflow.db; written to `directory`/params.yaml."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw["tracking"] = {**raw.get("tracking", {}), "enabled": True,
                       "tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"}  # fmt: skip
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def pipeline_repository(repo: Path) -> Path:
    """A git + DVC repository at `repo` with the project's dvc.yaml, the sources stages hash and params."""
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    tracked_params(repo)
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=repo, env=environment(repo), check=True, capture_output=True)
    return repo


def environment(home: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """`command` running in the background; its stdout goes to `log`, its stderr to `log`.err."""
    with log.open("w") as stdout, log.with_suffix(".err").open("w") as stderr:
        return subprocess.Popen(command, cwd=cwd, env=environment(log.parent), stdout=stdout, stderr=stderr)


def finish(process: subprocess.Popen, log: Path) -> str:
    """Wait for `process` (killed after TIMEOUT_S); its stdout, or a failure showing what it printed."""
    try:
        process.wait(timeout=TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    stdout, stderr = log.read_text(), log.with_suffix(".err").read_text()
    assert process.returncode == 0, f"{' '.join(process.args)} failed:\n{stdout[-4000:]}\n{stderr[-4000:]}"
    return stdout


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory) -> PipelineRuns:
    """`dvc repro compare` and `python -m pipelines run --local` of the same params, run concurrently."""
    work = tmp_path_factory.mktemp("e2e")
    dvc_repo, kfp_dir = work / "dvc-repo", work / "kfp"
    dvc_repo.mkdir()
    kfp_dir.mkdir()
    pipeline_repository(dvc_repo)
    kfp_command = [sys.executable, "-m", "pipelines", "run", "--local",
                   "--params", str(tracked_params(kfp_dir)), "--root", str(kfp_dir / "root")]  # fmt: skip
    kfp = start(kfp_command, REPO, kfp_dir / "pipeline-run.log")
    try:
        dvc_command = [str(BIN / "dvc"), "repro", "compare"]  # as `make run` runs it
        finish(start(dvc_command, dvc_repo, work / "dvc-repro.log"), work / "dvc-repro.log")
    except BaseException:
        kfp.kill()
        kfp.wait()
        raise
    try:
        return PipelineRuns(dvc_repo, finish(kfp, kfp_dir / "pipeline-run.log"), kfp_error="")
    except AssertionError as error:
        return PipelineRuns(dvc_repo, kfp_output="", kfp_error=str(error))
