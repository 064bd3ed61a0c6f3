"""The run context a runner hands a step: which engine runs it, in which pipeline run, at which commit.

Built by the runner — the CLI under DVC or by hand (`renalmae.cli.run_context`), a KFP component
(`renalmae.kfp_io.run_context`) — from what only the runner knows (its environment, `dvc.lock`); the
library reads it and nothing else (`renalmae.registry.lineage` turns it into tags).
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN = "unknown"


@dataclass(frozen=True)
class RunContext:
    """`engine`: `dvc` | `kfp` | `cli`. `pipeline_run_id`: groups the processes of one pipeline run (DVC
    stages, KFP pods) under one MLflow parent run; "" lets lineage derive it from the commit and params.
    `stage`: the DVC stage or KFP step. `git_commit`: "" lets lineage ask git in the working directory.
    `dvc_data_version` / `inputs_version`: dvc.lock's hash of the ingested data and of the stage's deps."""

    engine: str = "cli"
    pipeline_run_id: str = ""
    stage: str = ""
    git_commit: str = ""
    dvc_data_version: str = UNKNOWN
    inputs_version: str = UNKNOWN
