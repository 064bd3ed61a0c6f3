"""Fixtures of the evaluate tests: synthetic trained-model runs (see tests/comparekit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from comparekit import write_prediction_runs


@pytest.fixture
def prediction_runs(tmp_path: Path) -> list[Path]:
    """run dirs of both models x both tasks x 5 folds under tmp_path/models."""
    return write_prediction_runs(tmp_path / "models")
