"""How a wrapper (the CLI, a KFP component) runs a step: in this process, or as ranks of one torchrun job,
with the run context the runner built (`cli_run_context` for the CLI, from its environment and dvc.lock).

A step whose declaration names a process count (`Step.processes`, e.g. `pretrain.gpus`) and is given
more than one runs as that many data-parallel ranks of a `torchrun` job on this machine, every rank
running the same `renalmae <step>` command (`cli_argv`) on the same params, written to a file. A process
that is already a torchrun rank runs the step itself.

Several nodes (`Step.nodes`, e.g. `pretrain.nodes`) are a Kubeflow Trainer job, which the KFP component
submits with `run_as_trainjob`: the inputs and params are staged on a shared volume, every node runs
`torchrun -m renalmae.cli <step> ...` there, and the output is copied back (`renalmae.train.trainjob`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from renalmae.errors import ParamsError, ServiceError
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


@dataclass(frozen=True)
class TrainJobSettings:
    """What a TrainJob needs beyond the params: the image every node runs, the shared ReadWriteMany volume
    (claim name and mount path; None when the pipeline was compiled without one), container environment
    entries (secrets by reference, never values), and the namespace (None: this pod's)."""

    image: str
    volume_claim: str | None
    mount_path: str
    env: list[dict[str, Any]] = field(default_factory=list)
    namespace: str | None = None


def run_as_trainjob(module: ModuleType, params: Params, arguments: dict[str, Any], target: dict[str, Any],
                    out: str | Path, *, settings: TrainJobSettings, run_id: str, jobs=None,
                    poll_seconds: float = 30.0) -> Path:  # fmt: skip
    """Run the step `module` as a TrainJob of `step.nodes_for(params)` nodes; copy its output to `out`.

    The job is named after the step and `run_id`, so a retried task adopts the job of its earlier attempt
    (or finds its output on the volume). The step's params section holds `trainjob_runtime` and
    `trainjob_restarts`. Raises `ParamsError` without a shared volume or with checkpoints off it, and
    `ServiceError` as `renalmae.train.trainjob.run_trainjob` does.
    """
    from renalmae.train import trainjob
    from renalmae.train.distributed import torchrun_command

    step: Step = module.STEP
    if not settings.volume_claim:
        raise ParamsError(
            f"{step.nodes} > 1 runs a Kubeflow Trainer job whose nodes share inputs, checkpoints and output "
            "on a ReadWriteMany volume: compile the pipeline with `renalmae pipeline compile --data-pvc NAME`"
            f", or set {step.nodes}: 1"
        )
    if not settings.image:
        raise ParamsError(
            f"the pipeline did not name the image the TrainJob of {step.name} runs; recompile it"
        )
    volume = trainjob.SharedVolume(settings.volume_claim, settings.mount_path)
    volume.check_checkpoints(params)
    if jobs is None:
        jobs = trainjob.TrainJobs(trainjob.connect(), settings.namespace or trainjob.current_namespace())
    name = trainjob.job_name(step.name, run_id or params.hash()[:16])
    run_dir = volume.run_dir(name)
    inputs = {declared.argument: Path(arguments[declared.argument]) for declared in step.inputs}
    params_file, staged = trainjob.stage_inputs(run_dir, params, inputs)
    volume_out = run_dir / step.output.argument
    processes = step.processes_for(params)
    section = getattr(params, step.nodes.split(".")[0])
    spec = trainjob.TrainJobSpec(
        name=name, namespace=jobs.namespace, image=settings.image,
        command=torchrun_command(cli_argv(step, params_file, staged, target, volume_out)),
        nodes=step.nodes_for(params), procs_per_node=processes,
        gpus_per_node=processes if params.train.device != "cpu" else 0,
        volume_claim=volume.claim, mount_path=volume.mount_path, runtime=section.trainjob_runtime,
        env=list(settings.env),
    )  # fmt: skip
    if not volume_out.exists():  # the step writes its output atomically: there means complete
        trainjob.run_trainjob(jobs, trainjob.trainjob_manifest(spec), restarts=section.trainjob_restarts,
                              poll_seconds=poll_seconds)  # fmt: skip
    if not volume_out.exists():
        raise ServiceError(f"TrainJob {jobs.namespace}/{name} completed without writing {volume_out}")
    return trainjob.collect_output(volume_out, out)
