"""`make benchmarks` runs every script in benchmarks/ with `--tiny`: each one must have that mode."""

import ast
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py"))


def declared_options(script: Path) -> set[str]:
    """Every option string passed to an `add_argument` call in the script."""
    options = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            options |= {arg.value for arg in node.args if isinstance(arg, ast.Constant)}
    return options


def test_there_are_benchmarks():
    assert len(BENCHMARKS) >= 2


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_every_benchmark_has_a_tiny_mode(script):
    assert "--tiny" in declared_options(script), f"{script.name} has no --tiny mode for `make benchmarks`"
