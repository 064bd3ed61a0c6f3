"""Lineage of a run: git commit, data version, params hash, engine and pipeline-run id.

The data version is the content hash of the ingested table the step itself read
(`renalmae.artifacts.IngestedData.content_hash`, passed in by the step), so a KFP pod, which has no
dvc.lock of its run, records the same version as a DVC stage on the same data; the `ingest` entry of
dvc.lock is recorded beside it where there is one.

Read from the environment here and only here (with the CLI, the documented place for it):

- `RENALMAE_ENGINE`: `dvc` | `kfp` | `cli`. When unset: `dvc` if `DVC_STAGE` is set (DVC exports
  `DVC_ROOT` and `DVC_STAGE` to every stage command), `kfp` if `KFP_RUN_ID` is set, else `cli`.
- `RENALMAE_PIPELINE_RUN_ID`: groups the separate processes of one pipeline run (DVC stages, KFP
  pods) under one MLflow parent run. The KFP component wrapper sets it to the KFP run id, and so can
  a Makefile. When unset it is `KFP_RUN_ID` when present, else derived deterministically as
  `<engine>-<git commit[:12]>[-dirty]-<params hash[:12]>`: re-running the same code on the same
  params lands in the same parent run.
- `dvc.lock` (in the working directory, or `DVC_ROOT`): the hashes of the step's inputs and of the
  `ingest` output.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from renalmae.params import Params

UNKNOWN = "unknown"


def engine() -> str:
    """Which wrapper runs this process: `dvc`, `kfp` or `cli`."""
    if os.environ.get("RENALMAE_ENGINE"):
        return os.environ["RENALMAE_ENGINE"]
    if os.environ.get("DVC_STAGE"):
        return "dvc"
    if os.environ.get("KFP_RUN_ID"):
        return "kfp"
    return "cli"


def git_commit(cwd: str | os.PathLike = ".") -> str:
    """HEAD commit, with `-dirty` when tracked files differ from it; `unknown` outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return f"{commit}-dirty" if dirty else commit


def pipeline_run_id(params: Params) -> str:
    """The id shared by every step of one pipeline run (see the module docstring)."""
    explicit = os.environ.get("RENALMAE_PIPELINE_RUN_ID") or os.environ.get("KFP_RUN_ID")
    if explicit:
        return explicit
    commit = git_commit()
    short_commit = (
        UNKNOWN if commit == UNKNOWN else commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    )
    return f"{engine()}-{short_commit}-{params.hash()[:12]}"


def _dvc_lock(lock_path: str | os.PathLike | None) -> dict[str, Any]:
    if lock_path is None:
        lock_path = Path(os.environ.get("DVC_ROOT", ".")) / "dvc.lock"
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return {}
    try:  # libyaml where PyYAML has it: dvc.lock lists every code dep of every stage (~1 s in Python)
        return yaml.load(lock_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError:
        return {}


def _entry_hash(entry: dict[str, Any]) -> str:
    return str(entry.get("md5") or entry.get("hash") or entry.get("etag") or UNKNOWN)


def dvc_data_version(lock_path: str | os.PathLike | None = None) -> str:
    """DVC's hash of the ingested data set (the `ingest` stage's output in dvc.lock), or `unknown`."""
    stages = _dvc_lock(lock_path).get("stages", {})
    outs = stages.get("ingest", {}).get("outs", [])
    return _entry_hash(outs[0]) if outs else UNKNOWN


def inputs_version(stage: str | None = None, lock_path: str | os.PathLike | None = None) -> str:
    """sha256 (16 hex) over the dvc.lock hashes of a stage's deps, or `unknown` if the stage is not locked.

    `stage` defaults to `DVC_STAGE` (e.g. `finetune@binary-0`).
    """
    stage = stage or os.environ.get("DVC_STAGE")
    entry = _dvc_lock(lock_path).get("stages", {}).get(stage or "", {})
    deps = {dep["path"]: _entry_hash(dep) for dep in entry.get("deps", []) if "path" in dep}
    if not deps:
        return UNKNOWN
    return hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16]


def lineage_tags(params: Params, stage: str | None = None, data_version: str | None = None) -> dict[str, str]:
    """The tags every run and model version carries; `data_version`: the content hash of the ingested
    table the step read (`unknown` for a step that reads none)."""
    kfp_run_id = os.environ.get("KFP_RUN_ID") or (pipeline_run_id(params) if engine() == "kfp" else None)
    return {
        "renalmae.git_commit": git_commit(),
        "renalmae.data_version": data_version or UNKNOWN,
        "renalmae.dvc_data_version": dvc_data_version(),
        "renalmae.inputs_version": inputs_version(stage),
        "renalmae.params_hash": params.hash(),
        "renalmae.engine": engine(),
        "renalmae.pipeline_run_id": pipeline_run_id(params),
        **({"renalmae.kfp_run_id": kfp_run_id} if kfp_run_id else {}),
    }
