"""The same params and data give the same output bytes: DVC hashes the outputs, so anything that varies
between runs (a timing, a clock) makes `dvc status` call every later stage changed after each run."""

from __future__ import annotations

from pathlib import Path

import pytest

from renalmae.steps import ingest, split, validate
from renalmae.testing import tiny_params


def file_bytes(path: Path) -> dict[str, bytes]:
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def runs_twice(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Each data step run twice on the same inputs (the second replaces the first, as `dvc repro` does)."""
    root, params = tmp_path_factory.mktemp("twice"), tiny_params()
    outputs: dict[str, list[dict]] = {"ingest": [], "validate": [], "split": []}
    for _ in range(2):
        ingest.run(params, root / "ingested")
        outputs["ingest"].append(file_bytes(root / "ingested"))
        validate.run(params, root / "ingested", root / "validation")
        outputs["validate"].append(file_bytes(root / "validation"))
        split.run(params, root / "ingested", root / "validation", root / "splits.json")
        outputs["split"].append(file_bytes(root / "splits.json"))
    return {step: (first, second) for step, (first, second) in outputs.items()}


@pytest.mark.parametrize("step", ["ingest", "validate", "split"])
def test_a_rerun_writes_the_same_bytes(runs_twice, step):
    first, second = runs_twice[step]
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
