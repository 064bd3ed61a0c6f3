"""Lineage of a run: git commit, data version, params hash, engine and pipeline-run id, as tags.

Everything a runner knows comes in its `RunContext` (`renalmae.run_context`): the engine, the
pipeline-run id, dvc.lock's hashes. The data version is the content hash of the ingested table the step
itself read (`renalmae.artifacts.IngestedData.content_hash`, passed in by the step), so a KFP pod records
the same version as a DVC stage on the same data. Without a pipeline-run id the id is derived as
`<engine>-<git commit[:12]>[-dirty]-<params hash[:12]>`: re-running the same code on the same params
lands in the same parent run.
"""

from __future__ import annotations

import os
import subprocess

from renalmae.params import Params
from renalmae.run_context import UNKNOWN, RunContext


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


def pipeline_run_id(params: Params, context: RunContext | None = None) -> str:
    """The id shared by every step of one pipeline run (see the module docstring)."""
    context = context or RunContext()
    if context.pipeline_run_id:
        return context.pipeline_run_id
    commit = context.git_commit or git_commit()
    short_commit = (
        UNKNOWN if commit == UNKNOWN else commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    )
    return f"{context.engine}-{short_commit}-{params.hash()[:12]}"


def lineage_tags(
    params: Params, data_version: str | None = None, context: RunContext | None = None
) -> dict[str, str]:
    """The tags every run and model version carries; `data_version`: the content hash of the ingested
    table the step read (`unknown` for a step that reads none)."""
    context = context or RunContext()
    run_id = pipeline_run_id(params, context)
    return {
        "renalmae.git_commit": context.git_commit or git_commit(),
        "renalmae.data_version": data_version or UNKNOWN,
        "renalmae.dvc_data_version": context.dvc_data_version,
        "renalmae.inputs_version": context.inputs_version,
        "renalmae.params_hash": params.hash(),
        "renalmae.engine": context.engine,
        "renalmae.pipeline_run_id": run_id,
        **({"renalmae.kfp_run_id": run_id} if context.engine == "kfp" else {}),
    }
