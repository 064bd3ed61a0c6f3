"""How a wrapper (the CLI, a KFP component) runs a step: in this process, or as ranks of one torchrun job,
with the run context the runner built (`cli_run_context` for the CLI, from its environment and dvc.lock).

A step whose declaration names a process count (`Step.processes`, e.g. `pretrain.gpus`) and is given
more than one runs as that many data-parallel ranks of a `torchrun` job on this machine, every rank
running the same `renalmae <step>` command (`cli_argv`) on the same params, written to a file. A process
that is already a torchrun rank runs the step itself.

Several nodes (`Step.nodes`, e.g. `pretrain.nodes`) are a Kubeflow Trainer job, which only the Kubeflow
runner submits (`renalmae.trainjob.run_as_trainjob`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from renalmae.params import Params
from renalmae.pipeline import Step
from renalmae.run_context import UNKNOWN, RunContext

ENGINE_ENV = "RENALMAE_ENGINE"
RUN_ID_ENV = "RENALMAE_PIPELINE_RUN_ID"
COMMIT_ENV = "RENALMAE_GIT_COMMIT"
"""What a launcher (torchrun here, a TrainJob, a Makefile) tells the `renalmae` processes it starts about
the run they are part of; DVC tells its stages with `DVC_STAGE` and `DVC_ROOT`."""


def cli_run_context(step_name: str, environ: Mapping[str, str] = os.environ) -> RunContext:
    """The run context of a `renalmae <step>` process: `dvc` under DVC (with dvc.lock's hashes of the
    ingested data and of the stage's deps), else what its launcher set, else `cli`."""
    from renalmae.registry.lineage import git_commit  # no torch, no MLflow: git only

    stage = environ.get("DVC_STAGE", "")
    root = Path(environ.get("DVC_ROOT", "."))
    lock = _dvc_lock(root / "dvc.lock") if stage else {}
    ingest_outs = lock.get("ingest", {}).get("outs", [])
    deps = {dep["path"]: _entry_hash(dep) for dep in lock.get(stage, {}).get("deps", []) if "path" in dep}
    return RunContext(
        engine=environ.get(ENGINE_ENV) or ("dvc" if stage else "cli"),
        pipeline_run_id=environ.get(RUN_ID_ENV, ""),
        stage=stage or step_name,
        git_commit=environ.get(COMMIT_ENV) or git_commit(root),
        dvc_data_version=_entry_hash(ingest_outs[0]) if ingest_outs else UNKNOWN,
        inputs_version=hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16]
        if deps
        else UNKNOWN,
    )


def context_environment(context: RunContext) -> dict[str, str]:
    """The variables that hand `context` to the `renalmae` processes a launcher starts."""
    return {
        ENGINE_ENV: context.engine,
        **({RUN_ID_ENV: context.pipeline_run_id} if context.pipeline_run_id else {}),
        **({COMMIT_ENV: context.git_commit} if context.git_commit else {}),
    }


def _dvc_lock(path: Path) -> dict[str, Any]:
    """The `stages` of dvc.lock ({} when there is none or it does not parse)."""
    if not path.is_file():
        return {}
    try:  # libyaml where PyYAML has it: dvc.lock lists every code dep of every stage
        return (yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}).get(
            "stages", {}
        )
    except yaml.YAMLError:
        return {}


def _entry_hash(entry: dict[str, Any]) -> str:
    return str(entry.get("md5") or entry.get("hash") or entry.get("etag") or UNKNOWN)


def cli_argv(step: Step, params_file: str | Path, arguments: dict[str, Any], target: dict[str, Any],
             out: str | Path) -> list[str]:  # fmt: skip
    """`[<step>, --params, FILE, <input options>, (--task T --fold K --repeat R), --out, OUT]`: the CLI's
    options for these arguments (as `renalmae.cli.add_step_arguments` declares them)."""
    argv = [step.name, "--params", str(params_file)]
    for declared in step.inputs:
        value = arguments[declared.argument]
        paths = value if declared.many else [value]
        argv += [declared.artifact.option, *map(str, paths)]
    for key, value in target.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    return [*argv, "--out", str(out)]


def launched_by_torchrun() -> bool:
    """True in a process that `torchrun` started as one rank of a job (read from its environment, so a
    step that never trains does not import torch to ask)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def run_step(module: ModuleType, params: Params, arguments: dict[str, Any], target: dict[str, Any],
             out: str | Path, context: RunContext | None = None) -> Path:  # fmt: skip
    """Run the step `module` (its `STEP` and `run`) on these arguments; returns its output path.

    Under torchrun with `step.processes_for(params)` ranks when that is above one and this process is not
    a rank already; raises `RenalMAEError` when a rank fails (its message is printed above by the CLI).
    """
    step: Step = module.STEP
    target = {key: value for key, value in target.items() if value is not None}
    processes = step.processes_for(params)
    if processes <= 1 or launched_by_torchrun():
        tracked = {"context": context or RunContext()} if step.tracked else {}
        return module.run(params, **arguments, **target, **{step.output.argument: out}, **tracked)
    from renalmae.train.distributed import run_under_torchrun  # torch: only for a torchrun launch

    with tempfile.TemporaryDirectory(prefix=f"renalmae-{step.name}-") as scratch:
        params_file = Path(scratch) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
        environment = {**os.environ, **context_environment(context or RunContext())}
        run_under_torchrun(cli_argv(step, params_file, arguments, target, out), processes, environment)
    return Path(out)
