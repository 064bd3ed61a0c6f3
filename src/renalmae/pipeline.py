"""The pipeline, declared once: its steps, what each reads and writes, the params keys that shape it, its
fan-out, device and model.

Plain data, importable without torch: the CLI (`renalmae.cli`), the KFP components and DAG
(`components/`, `pipelines/`), `dvc.yaml` (written by `renalmae dvc-yaml`, `renalmae.dvc_yaml`) and the
checkpoint fingerprints of the training steps read it. Each step's function is `run` in
`renalmae.steps.<name>`, imported only when the step runs (`load`).

A training step (`fans_out`) trains every target of the params — task × fold × repeat
(`finetune.tasks`, `split.folds`, `evaluate.repeats`) — in one process, or the one target it is given
(a Kubeflow pod of the DAG's ParallelFor): `targets`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from renalmae.artifacts import (
    BASELINE,
    CANDIDATE,
    Comparison,
    Encoder,
    Explanations,
    IngestedData,
    Registered,
    Splits,
    TrainedRun,
    ValidationReport,
)


@dataclass(frozen=True)
class Input:
    """An artifact a step reads, passed to `run()` as keyword `argument`.

    `producers` names the steps whose runs it collects when it is a list of runs (`compare` reads the
    runs of `finetune` and `baseline`); empty for the one artifact of its class.
    """

    argument: str
    artifact: type
    producers: tuple[str, ...] = ()

    @property
    def many(self) -> bool:
        return bool(self.producers)


@dataclass(frozen=True)
class Output:
    """The artifact a step writes, at the path given to `run()` as keyword `argument`."""

    argument: str
    artifact: type

    @property
    def path(self) -> str:
        return self.artifact.default_path


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a training step trains: its role in the comparison and its name — `name`, or the value
    of the params key `name_param` (the baseline is named after `baseline.arch`, so any CNN can be it)."""

    role: str
    name: str = ""
    name_param: str = ""

    def name_for(self, params: Any) -> str:
        return self.name or str(value_at(params, self.name_param))


@dataclass(frozen=True)
class Step:
    """The contract of one step.

    `params`: the sections or dotted keys whose values shape its outputs (DVC's `params:`, the checkpoint
    fingerprint). `fans_out`: it trains task × fold × repeat targets (`targets`) and takes `task`, `fold`
    and `repeat` keywords, each optional. `device`: `gpu` for a step that trains or runs models (its pod
    asks for a GPU and runs the CUDA image). `processes` / `nodes`: the params keys (e.g. `pretrain.gpus`)
    giving its data-parallel processes per node and its nodes (`renalmae.launch`). `tracked`: it logs
    to MLflow, so `run()` takes the runner's `context` (`renalmae.run_context.RunContext`).
    """

    name: str
    summary: str
    inputs: tuple[Input, ...]
    output: Output
    params: tuple[str, ...]
    fans_out: bool = False
    device: str = "cpu"
    model: ModelIdentity | None = None
    processes: str = ""
    nodes: str = ""
    tracked: bool = False

    def processes_for(self, params: Any) -> int:
        """Data-parallel processes per node the params ask for (1 when the step declares none)."""
        return int(value_at(params, self.processes)) if self.processes else 1

    def nodes_for(self, params: Any) -> int:
        """Nodes the params ask for (1 when the step declares none)."""
        return int(value_at(params, self.nodes)) if self.nodes else 1


def value_at(params: Any, dotted: str) -> Any:
    """`params.<section>.<key>` for `dotted` = `section.key`."""
    for key in dotted.split("."):
        params = getattr(params, "validate_" if key == "validate" else key)
    return params


# What a training run's outputs depend on beyond its own section (never wording, progress bars, threads
# of decoding or where checkpoints go: editing those must not retrain).
TRAINING_KEYS = (
    "data.classes", "data.negative_class", "data.image_size", "data.crop", "augment",
    "train.device", "train.precision", "train.compile", "train.grad_accum_steps", "train.log_every_steps",
    "train.device_cache_bytes", "train.cpu_threads",
)  # fmt: skip
TARGET_KEYS = ("finetune.tasks", "split.folds", "evaluate.repeats")
"""The keys a training step fans out over: task × fold × repeat."""
CLASSIFIER_KEYS = (*TRAINING_KEYS, "train.selection_fraction", "split.seed", *TARGET_KEYS)
RUNS = TrainedRun
RUN_PRODUCERS = ("finetune", "baseline")

STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step(
            "ingest", "list, check and decode every image into one table and a uint8 cache",
            inputs=(), output=Output("out_dir", IngestedData),
            params=("data", "phantom"),
        ),
        Step(
            "validate", "check the ingested data against the data contract (great-expectations)",
            inputs=(Input("ingest_dir", IngestedData),), output=Output("report_dir", ValidationReport),
            params=("data", "validate", "split.folds"),  # the class minimum is at least k folds
        ),
        Step(
            "split", "grouped, stratified holdout test and k folds",
            inputs=(Input("ingest_dir", IngestedData), Input("validation_dir", ValidationReport)),
            output=Output("out_path", Splits),
            params=("data", "split"),
        ),
        Step(
            "pretrain", "masked-autoencoder pretraining of the ViT encoder (USF-MAE)",
            inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits)),
            output=Output("out_dir", Encoder),
            params=(*TRAINING_KEYS, "data.source", "data.pool", "encoder", "mae", "pretrain"),
            device="gpu", processes="pretrain.gpus", nodes="pretrain.nodes", tracked=True,
        ),
        Step(
            "finetune", "fine-tune the MAE-initialised ViT on every task × fold × repeat (USF-MAE)",
            inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits),
                    Input("encoder_dir", Encoder)),
            output=Output("out_dir", TrainedRun),
            params=(*CLASSIFIER_KEYS, "encoder", "finetune"),
            fans_out=True, device="gpu", model=ModelIdentity(CANDIDATE, name="usfmae"), tracked=True,
        ),
        Step(
            "baseline", "train the CNN baseline (DenseNet-169) on every task × fold × repeat, like finetune",
            inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits)),
            output=Output("out_dir", TrainedRun),
            params=(*CLASSIFIER_KEYS, "baseline"),
            fans_out=True, device="gpu", model=ModelIdentity(BASELINE, name_param="baseline.arch"),
            tracked=True,
        ),
        Step(
            "compare", "compare USF-MAE with the baseline: fold ensembles, DeLong, McNemar, intervals",
            inputs=(Input("run_dirs", RUNS, producers=RUN_PRODUCERS), Input("splits_path", Splits)),
            output=Output("out_dir", Comparison),
            params=("evaluate", "data.description", "data.classes", "data.negative_class",
                    "data.group_column", *TARGET_KEYS[:2]),
        ),
        Step(
            "explain", "Score-CAM of both models on the holdout, checked by lesion and occlusion tests",
            inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits),
                    Input("run_dirs", RUNS, producers=RUN_PRODUCERS)),
            output=Output("out_dir", Explanations),
            params=("explain", "data.classes", "data.negative_class", "train.device", "train.precision",
                    "finetune.tasks", "split.folds", "evaluate.confidence", "evaluate.bootstrap_resamples"),
            device="gpu",
        ),
        Step(
            "register", "register each task's fold ensembles in MLflow with lineage and the gate's inputs",
            inputs=(Input("run_dirs", RUNS, producers=RUN_PRODUCERS), Input("comparison_dir", Comparison),
                    Input("validation_dir", ValidationReport)),
            output=Output("out_path", Registered),
            params=("registry", "tracking", "data.negative_class", "finetune.tasks", "split.folds",
                    "validate.min_pixel_std"),
            tracked=True,
        ),
    )
}  # fmt: skip
PIPELINE = tuple(STEPS)
"""The step names in the order the DAG runs them."""
CANDIDATE_MODEL = STEPS["finetune"].model.name
"""The name of the model the study proposes (registered as `<prefix>-<name>-<task>`)."""
MODEL_LABELS = {CANDIDATE_MODEL: "USF-MAE", "densenet169": "DenseNet-169"}
"""How reports name a model; a baseline not listed (any `baseline.arch`) is shown under its own name."""


def model_label(model: str) -> str:
    """The display name of model `model` in reports and figures."""
    return MODEL_LABELS.get(model, model)


def step(name: str) -> Step:
    """The declaration of step `name`; `KeyError` naming the steps for an unknown one."""
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(PIPELINE)}")
    return STEPS[name]


def load(name: str) -> ModuleType:
    """The step module `renalmae.steps.<name>` (its `run`); imports torch, MLflow or great-expectations."""
    return importlib.import_module(f"renalmae.steps.{step(name).name}")


def model_names(params: Any) -> dict[str, str]:
    """`{role: model name}` of the two models compared, for these params."""
    return {s.model.role: s.model.name_for(params) for s in STEPS.values() if s.model is not None}


@dataclass(frozen=True)
class Target:
    """One training run of a fanning-out step: a task, a fold and a repeat (seed = section seed + repeat)."""

    task: str
    fold: int
    repeat: int = 0

    @property
    def name(self) -> str:
        return f"{self.task}-fold{self.fold}-repeat{self.repeat}"

    def path(self, root: str | Any) -> Any:
        """This run's folder under a training step's output folder `root`."""
        return TrainedRun.run_dir(root, self.task, self.fold, self.repeat)


def targets(params: Any, task: str | None = None, fold: int | None = None, repeat: int | None = None):
    """The runs a training step makes: `finetune.tasks` × `split.folds` × range(`evaluate.repeats`), or only
    those with the given task, fold and repeat (a given value is used as it is: the step refuses one the
    data does not have, e.g. a fold outside the splits)."""
    tasks = list(params.finetune.tasks) if task is None else [task]
    folds = list(params.split.folds) if fold is None else [int(fold)]
    repeats = range(params.evaluate.repeats) if repeat is None else [int(repeat)]
    return [Target(t, f, r) for t in tasks for f in folds for r in repeats]
