"""Pipeline steps: one pure function `run(params, ...)` per module, wrapped by the CLI, DVC and KFP.

A step takes a validated `Params` and input paths, writes its outputs atomically under the output
path it is given, and returns it. It reads no environment and no global configuration.

Beside its `run()`, each step module declares its contract once, as `STEP = Step(...)`: the artifacts
it reads and writes (`renalmae.artifacts`), the params that shape its outputs, and its model identity.
The CLI subcommand, the KFP component and the checkpoint fingerprint are derived from it, and a test
holds `dvc.yaml` to it. `PIPELINE` lists the step modules in the order the DAG runs them.

`declaration(name)` reads a step's `STEP` from its source without importing the module (which pulls in
torch, MLflow or great-expectations): compiling the KFP pipeline needs the declarations only.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from renalmae import artifacts
from renalmae.artifacts import Artifact
from renalmae.params import Params

PIPELINE = (
    "ingest",
    "validate",
    "split",
    "pretrain",
    "finetune",
    "baseline",
    "compare",
    "explain",
    "register",
)


@dataclass(frozen=True)
class Input:
    """An artifact a step reads, passed to `run()` as keyword `argument`.

    `producers` names the steps whose outputs it is when it is a list of their runs (`compare` reads the
    runs of `finetune` and `baseline`); otherwise the one step that writes that artifact class.
    """

    argument: str
    artifact: type[Artifact]
    producers: tuple[str, ...] = ()

    @property
    def many(self) -> bool:
        return bool(self.producers)


@dataclass(frozen=True)
class Output:
    """The artifact a step writes, at the path given to `run()` as keyword `argument`."""

    argument: str
    artifact: type[Artifact]


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a training step trains: its role in the comparison and its name.

    The name is `name`, or the value of the params key `name_param` (the baseline is named after
    `baseline.arch`, so any CNN can be the baseline).
    """

    role: str
    name: str = ""
    name_param: str = ""

    def name_for(self, params: Params) -> str:
        if not self.name_param:
            return self.name
        section, key = self.name_param.split(".")
        return str(getattr(getattr(params, section), key))


@dataclass(frozen=True)
class Step:
    """The contract of one step. `params` are the sections or dotted keys whose values shape its outputs
    (DVC's `params:`, the checkpoint fingerprint); `per_target` steps run once per task × fold and take
    `task` and `fold` keywords. `processes` / `nodes` name the params keys (e.g. `pretrain.gpus`) giving
    the data-parallel processes per node and the nodes the step runs on (`renalmae.launch`)."""

    name: str
    inputs: tuple[Input, ...]
    output: Output
    params: tuple[str, ...]
    per_target: bool = False
    model: ModelIdentity | None = None
    processes: str = ""
    nodes: str = ""

    def output_path(self, task: str = "", fold: int | str = "") -> str:
        return self.output.artifact.path_for(step=self.name, task=task, fold=fold)

    def processes_for(self, params: Params) -> int:
        """Data-parallel processes per node the params ask for (1 when the step declares none)."""
        return _int_param(params, self.processes)

    def nodes_for(self, params: Params) -> int:
        """Nodes the params ask for (1 when the step declares none)."""
        return _int_param(params, self.nodes)


def _int_param(params: Params, dotted: str) -> int:
    if not dotted:
        return 1
    section, key = dotted.split(".")
    return int(getattr(getattr(params, section), key))


def _module_name(name: str) -> str:
    if name not in PIPELINE:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(PIPELINE)}")
    return f"{__name__}.{name}"


def load(name: str) -> ModuleType:
    """The step module `renalmae.steps.<name>` (its `STEP` and `run`); `name` must be in `PIPELINE`."""
    return importlib.import_module(_module_name(name))


def source(name: str) -> ast.Module:
    """The parsed source of step `name`'s module, read without importing it (KeyError: unknown step)."""
    origin = importlib.util.find_spec(_module_name(name)).origin
    return ast.parse(Path(origin).read_text(), origin)


def declaration(name: str) -> Step:
    """The `STEP` of step `name`, evaluated from the module's source without importing the module.

    The `STEP = Step(...)` expression may use this module's classes and the names of `renalmae.artifacts`
    only; raises `KeyError` for an unknown step and `NameError` for a declaration that uses anything else.
    `tests/unit/steps/test_declarations.py` holds it equal to the imported module's `STEP`.
    """
    (expression,) = [
        node.value
        for node in source(name).body
        if isinstance(node, ast.Assign) and [getattr(target, "id", "") for target in node.targets] == ["STEP"]
    ]
    names = {**vars(artifacts), **{cls.__name__: cls for cls in (Step, Input, Output, ModelIdentity)}}
    return eval(
        compile(ast.Expression(expression), f"renalmae.steps.{name}", "eval"), {"__builtins__": {}}, names
    )
