"""`dvc.yaml`, written from the pipeline declaration (`renalmae dvc-yaml`); CI fails when the committed file
differs from what this writes.

One stage per step: `renalmae <step>` on the declared inputs (a training step trains every task × fold
× repeat in its one process), the declared params keys, the declared outputs (the headline files as
`metrics:`), and as code deps exactly the step's import closure inside `src/renalmae` — so a change to
a module re-runs the stages that import it and nothing else. The imports are read from the source with
`ast` (parsed, never evaluated).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import yaml

from renalmae import pipeline
from renalmae.artifacts import Comparison, Encoder
from renalmae.errors import RenalMAEError

PACKAGE = "renalmae"
PACKAGE_DIR = Path(__file__).resolve().parent
HEADER = """\
# Written by `renalmae dvc-yaml` from src/renalmae/pipeline.py: edit the declaration, not this file
# (tests/unit/steps/test_dvc_yaml.py fails when they differ). Every knob is in params.yaml; code deps are
# each step's import closure inside src/renalmae. `dvc exp show` / `dvc metrics diff` show the headline
# metrics; `dvc plots show` the MAE loss and the holdout ROC / PR curves of the fold ensembles.
"""


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of a `renalmae` module or package, or None when the name is not a module."""
    base = package_dir.parent.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def imported_modules(module: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """`renalmae` modules a module imports anywhere in its body (function-level imports included), with
    the packages whose `__init__` each import runs."""
    path = module_file(module, package_dir)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    found = set()
    for name in names:
        if name == PACKAGE or name.startswith(f"{PACKAGE}."):
            parts = name.split(".")
            found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return {name for name in found if module_file(name, package_dir) is not None}


def import_closure(module: str, package_dir: Path = PACKAGE_DIR) -> set[Path]:
    """Source files of every `renalmae` module that importing `module` can run (transitively)."""
    seen: set[str] = set()
    pending = [module, *(".".join(module.split(".")[:end]) for end in range(1, module.count(".") + 1))]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(imported_modules(name, package_dir) - seen)
    return {module_file(name, package_dir) for name in seen}


def code_deps(files: set[Path], package_dir: Path, root: Path) -> list[str]:
    """The shortest dep list covering exactly `files`: a package folder where every module in it is in."""
    covered = set(files)
    for folder in sorted({f.parent for f in files}, key=lambda p: len(p.parts), reverse=True):
        inside = set(folder.rglob("*.py"))
        if folder != package_dir and inside and inside <= covered | {folder}:
            covered = (covered - inside) | {folder}
    return sorted(Path(os.path.relpath(path, root)).as_posix() for path in covered)


def stage(step: pipeline.Step, package_dir: Path, root: Path) -> dict[str, Any]:
    """The dvc.yaml stage of `step`."""
    command, deps = ["renalmae", step.name], []
    for declared in step.inputs:
        artifact = declared.artifact
        paths = [artifact.path_for(p) for p in declared.producers] if declared.many else [artifact.path_for()]
        command += [artifact.option, *paths]
        deps += paths
    out = step.output.artifact.path_for(step.name)
    outputs = step.output.artifact.dvc_outs
    closure = import_closure(f"{PACKAGE}.steps.{step.name}", package_dir)
    result = {
        "cmd": " ".join([*command, "--out", out]),
        "deps": deps + code_deps(closure, package_dir, root),
        "params": list(step.params),
        "outs": [f"{out}/{o.name}" if o.name else out for o in outputs if not o.metric],
    }
    metrics = [f"{out}/{o.name}" for o in outputs if o.metric]
    return result | ({"metrics": metrics} if metrics else {})


def plots(params) -> list[dict[str, Any]]:
    """The MAE loss curve and, per task, the holdout ROC and PR curves of both models."""
    names = list(pipeline.model_names(params).values())
    loss = f"{Encoder.path_for()}/{Encoder.LOSS}"
    entries: list[dict[str, Any]] = [
        {"MAE pretraining loss": {"template": "linear", "x": "step", "y": {loss: "loss"}}}
    ]
    for task in params.finetune.tasks:
        label = "binary" if task == "binary" else "3-class, micro-averaged"
        roc = {f"{Comparison.path_for()}/{Comparison.curve('roc', task, name)}": "tpr" for name in names}
        pr = {f"{Comparison.path_for()}/{Comparison.curve('pr', task, name)}": "precision" for name in names}
        entries += [
            {f"ROC {label} (holdout)": {"template": "simple", "x": "fpr", "x_label": "1 - specificity",
                                        "y_label": "sensitivity", "y": roc}},
            {f"PR {label} (holdout)": {"template": "simple", "x": "recall", "y": pr}},
        ]  # fmt: skip
    return entries


def dvc_yaml_text(params, root: str | os.PathLike = ".", package_dir: Path = PACKAGE_DIR) -> str:
    """The text of dvc.yaml for a project checkout at `root` whose package is at `package_dir`."""
    root = Path(root).resolve()
    if not package_dir.is_relative_to(root):
        raise RenalMAEError(
            f"the renalmae package at {package_dir} is outside {root}: write dvc.yaml in the project "
            "checkout, with the package installed from it (`make setup`, `pip install -e .`)"
        )
    stages = {name: stage(step, package_dir, root) for name, step in pipeline.STEPS.items()}
    body = yaml.safe_dump({"stages": stages, "plots": plots(params)}, sort_keys=False, width=120)
    return HEADER + body


def write_dvc_yaml(output: str | os.PathLike, params) -> Path:
    """Write dvc.yaml to `output` (its folder is the project root); returns the path."""
    output = Path(output)
    output.write_text(dvc_yaml_text(params, output.parent))
    return output
