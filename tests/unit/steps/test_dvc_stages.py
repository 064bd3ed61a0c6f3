"""dvc.yaml against the steps' declarations: every stage runs its step with the declared inputs, depends
on exactly the step's code (its import closure inside src/renalmae), and lists the declared params and
outputs. So after a change to any module a step imports, `dvc status` reports that stage as changed.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from renalmae import steps

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_ROOT = REPO_ROOT / "src"
PACKAGE = "renalmae"
TARGET = {"task": "${item.task}", "fold": "${item.fold}"}
MATRIX = {"task": "${finetune.tasks}", "fold": "${split.folds}"}


def module_file(module: str) -> Path | None:
    """The source file of a `renalmae` module or package, or None when the name is not a module."""
    base = SOURCE_ROOT.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def imported_modules(module: str) -> set[str]:
    """`renalmae` modules a module imports anywhere in its body (function-level imports included), with
    the packages whose `__init__` each import runs."""
    path = module_file(module)
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
    return {name for name in found if module_file(name) is not None}


def import_closure(module: str) -> set[Path]:
    """Source files of every `renalmae` module that importing `module` can run (transitively)."""
    seen: set[str] = set()
    pending = [module, *(".".join(module.split(".")[:end]) for end in range(1, module.count(".") + 1))]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(imported_modules(name) - seen)
    return {module_file(name) for name in seen}


def code_deps(files: set[Path]) -> list[str]:
    """The shortest dep list covering exactly `files`: a package folder where every module in it is in."""
    covered = set(files)
    for folder in sorted({f.parent for f in files}, key=lambda p: len(p.parts), reverse=True):
        inside = set(folder.rglob("*.py"))
        if folder != SOURCE_ROOT / PACKAGE and inside <= covered | {folder} and inside:
            covered = (covered - inside) | {folder}
    return sorted(str(path.relative_to(REPO_ROOT)) for path in covered)


def expected_stage(step: steps.Step) -> dict:
    """The dvc.yaml stage a step's declaration calls for (per-task-and-fold steps as a matrix)."""
    target = TARGET if step.per_target else {}
    command, deps = ["renalmae", step.name], []
    for declared in step.inputs:
        artifact = declared.artifact
        paths = [artifact.root_for(p) for p in declared.producers] if declared.many else [artifact.path_for()]
        command += [artifact.option, *paths]
        deps += paths
    if step.per_target:
        command += ["--task", target["task"], "--fold", target["fold"]]
    out = step.output_path(**target)
    command += ["--out", out]
    outs = [f"{out}/{o.name}" if o.name else out for o in step.output.artifact.dvc_outs if not o.metric]
    metrics = [f"{out}/{o.name}" for o in step.output.artifact.dvc_outs if o.metric]
    stage = {
        "cmd": " ".join(command),
        "deps": deps + code_deps(import_closure(f"{PACKAGE}.steps.{step.name}")),
        "params": list(step.params),
        "outs": outs,
    }
    if metrics:
        stage["metrics"] = metrics
    if step.per_target:
        stage = {"matrix": MATRIX, **stage}
    return stage


def entries(values: list) -> list[str]:
    """Paths of a dvc.yaml list whose items are a path or a one-key mapping `{path: options}`."""
    return [next(iter(value)) if isinstance(value, dict) else value for value in values]


def stage_differences(stage: dict, step: steps.Step) -> list[str]:
    """Every way `stage` differs from what `step` declares (empty when they agree)."""
    expected = expected_stage(step)
    differences = []
    if " ".join(str(stage.get("cmd", "")).split()) != expected["cmd"]:
        differences.append(f"cmd is {stage.get('cmd')!r}, the declaration calls for {expected['cmd']!r}")
    if stage.get("matrix") != expected.get("matrix"):
        differences.append(f"matrix is {stage.get('matrix')}, expected {expected.get('matrix')}")
    for key in ("deps", "params", "outs", "metrics"):
        have, want = set(entries(stage.get(key, []))), set(expected.get(key, []))
        if have != want:
            differences.append(f"{key}: missing {sorted(want - have)}, not declared {sorted(have - want)}")
    for key in ("outs", "metrics"):
        uncached = [path for path, options in _options(stage.get(key, [])) if options.get("cache") is False]
        if uncached:
            differences.append(f"{key} {uncached} are `cache: false`: neither git nor DVC would keep them")
    return differences


def _options(values: list) -> list[tuple[str, dict]]:
    return [next(iter(v.items())) if isinstance(v, dict) else (v, {}) for v in values]


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


@pytest.fixture(scope="module")
def declarations() -> dict[str, steps.Step]:
    return {name: steps.load(name).STEP for name in steps.PIPELINE}


def test_every_step_is_a_stage_and_every_stage_a_step(dvc_yaml):
    assert list(dvc_yaml["stages"]) == list(steps.PIPELINE)


@pytest.mark.parametrize("name", steps.PIPELINE)
def test_stage_matches_the_step_declaration(name, dvc_yaml, declarations):
    differences = stage_differences(dvc_yaml["stages"][name], declarations[name])
    expected = yaml.safe_dump({name: expected_stage(declarations[name])}, sort_keys=False, width=200)
    assert not differences, "\n".join(differences) + f"\n\ndvc.yaml should hold:\n{expected}"


def test_a_stage_missing_one_code_dep_is_caught(tmp_path, declarations):
    """What the test exists for: finetune imports renalmae.data.cache (through the classifier)."""
    text = (REPO_ROOT / "dvc.yaml").read_text()
    finetune_at = text.index("\n  finetune:")
    dep = "    - src/renalmae/data/cache.py\n"
    cut = text[:finetune_at] + text[finetune_at:].replace(dep, "", 1)
    (tmp_path / "dvc.yaml").write_text(cut)

    stage = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]["finetune"]

    assert stage_differences(stage, declarations["finetune"]) == [
        "deps: missing ['src/renalmae/data/cache.py'], not declared []"
    ]


def test_a_stage_with_an_undeclared_param_or_output_is_caught(dvc_yaml, declarations):
    stage = copy.deepcopy(dvc_yaml["stages"]["compare"])
    stage["params"].append("train")
    stage["outs"].append("reports/comparison/extra.json")

    assert len(stage_differences(stage, declarations["compare"])) == 2


def test_closure_follows_function_level_and_submodule_imports():
    closure = {str(path.relative_to(SOURCE_ROOT)) for path in import_closure("renalmae.steps.finetune")}

    assert "renalmae/train/checkpoint.py" in closure  # `from renalmae.train import checkpoint as ckpt`
    assert "renalmae/data/cache.py" in closure  # through renalmae.train.classifier
    assert "renalmae/cli.py" not in closure and "renalmae/steps/compare.py" not in closure


def test_python_caches_are_not_part_of_any_code_dep(tmp_path):
    """Importing the package writes __pycache__/*.pyc into the code folders; DVC must not hash them."""
    import shutil
    import subprocess
    import sys

    dvc = str(Path(sys.executable).with_name("dvc"))
    shutil.copy(REPO_ROOT / ".dvcignore", tmp_path / ".dvcignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    cached = tmp_path / "src" / "renalmae" / "models" / "__pycache__" / "mae.cpython-311.pyc"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"bytecode")

    result = subprocess.run([dvc, "check-ignore", str(cached.relative_to(tmp_path))], cwd=tmp_path)

    assert result.returncode == 0, ".dvcignore must ignore __pycache__/ (else every import changes a dep)"
