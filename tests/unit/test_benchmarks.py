"""`make benchmarks` runs every script in benchmarks/ with `--tiny`: each one must have that mode."""

import ast
import json
import math
import subprocess
import sys
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


GPU_CHECK_PARTS = ("throughput-eager", "kidney-external", "gpu-vit", "throughput-compile")


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow  # ~60 s of CPU: `make test-all` and `make benchmarks` run it
def test_gpu_check_tiny_reports_every_part_with_a_figure_or_a_reason(tmp_path):
    """The prepared device run's code, on the CPU (`--tiny`): summary.json holds every part, each with at
    least one figure or the reason it has none, and a reason for every workload or step it did not finish;
    what comes back fits the device tool (at most 8 flat files)."""
    out = tmp_path / "out"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    subprocess.run(
        [sys.executable, str(script), "--tiny", "--out", str(out)], cwd=tmp_path, check=True, timeout=600
    )

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["parts"]) == set(GPU_CHECK_PARTS)
    for name, part in summary["parts"].items():
        numbers = [value for value in part["figures"].values() if is_number(value)]
        reason = part.get("skip_reason")
        assert numbers or (isinstance(reason, str) and reason), f"{name}: neither a figure nor a skip reason"
        assert all(isinstance(why, str) and why for why in part.get("skipped", {}).values()), name
    assert summary["parts"]["throughput-compile"]["status"] == "skipped"  # never compiled on the CPU
    returned = list(out.iterdir())
    assert len(returned) <= 8 and all(path.is_file() for path in returned)
