"""Check that every command of a compiled KFP pipeline resolves in THIS Python environment.

    python3 resolve_commands.py PIPELINE_YAML      prints a JSON report, exits 1 when anything is missing

Run inside the image (or an environment built like it): for each executor, the program KFP embeds in
the container command is loaded as a module, the function named by `--function_to_execute` must exist,
every import in its body must resolve, every `module.name` it uses must exist, and the launcher module
of the command line (`python3 -m kfp.dsl.executor_main`) must be importable. Nothing is executed
beyond imports: no step runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml


def _imports(function: ast.FunctionDef) -> tuple[list[str], dict[str, str]]:
    """Problems importing what the body imports, and the body's module aliases (alias -> module)."""
    problems, aliases = [], {}
    for node in ast.walk(function):
        if isinstance(node, ast.Import):
            for alias in node.names:
                try:
                    importlib.import_module(alias.name)
                    aliases[alias.asname or alias.name] = alias.name
                except ImportError as error:
                    problems.append(f"import {alias.name}: {error}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            try:
                module = importlib.import_module(node.module)
            except ImportError as error:
                problems.append(f"from {node.module} import ...: {error}")
                continue
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                if hasattr(module, alias.name):
                    if isinstance(getattr(module, alias.name), type(sys)):
                        aliases[alias.asname or alias.name] = qualified
                    continue
                try:
                    importlib.import_module(qualified)
                    aliases[alias.asname or alias.name] = qualified
                except ImportError as error:
                    problems.append(f"from {node.module} import {alias.name}: {error}")
    return problems, aliases


def _attributes(function: ast.FunctionDef, aliases: dict[str, str]) -> list[str]:
    problems = []
    for node in ast.walk(function):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = importlib.import_module(aliases[node.value.id])
            if not hasattr(module, node.attr):
                problems.append(f"{aliases[node.value.id]}.{node.attr} does not exist")
    return problems


def check_executor(container: dict, scratch: Path) -> list[str]:
    command, args = container["command"], container.get("args", [])
    problems = [f"{name} not found" for name in (command[0], "python3") if shutil.which(name) is None]
    launcher = re.search(r"python3 -m ([\w.]+)", command[2])
    if launcher is None or importlib.util.find_spec(launcher.group(1)) is None:
        problems.append(f"launcher module not importable: {launcher.group(1) if launcher else command[2]!r}")
    function_name = args[args.index("--function_to_execute") + 1]
    program = scratch / f"{function_name}.py"
    program.write_text(command[3])
    spec = importlib.util.spec_from_file_location(f"ephemeral_{function_name}", program)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, function_name, None)):
        return [*problems, f"function {function_name} not defined by the program"]
    (function,) = [
        node
        for node in ast.parse(command[3]).body
        if isinstance(node, ast.FunctionDef) and node.name == function_name
    ]
    import_problems, aliases = _imports(function)
    return problems + import_problems + _attributes(function, aliases)


def main(pipeline_yaml: str) -> int:
    spec = next(yaml.safe_load_all(Path(pipeline_yaml).read_text()))
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, executor in sorted(spec["deploymentSpec"]["executors"].items()):
            report[name] = check_executor(executor["container"], Path(scratch))
    print(json.dumps(report, indent=1))
    return 1 if any(report.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
