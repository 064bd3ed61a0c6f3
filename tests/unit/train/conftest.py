"""Fixtures of the training tests (helpers in trainkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainkit import make_dataset, tiny_params


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """(ingest_dir, splits_path): 72 labelled images (36 normal, 24 utd, 12 mcdk), 24 pool, 2 folds."""
    return make_dataset(tmp_path)


@pytest.fixture
def params():
    return tiny_params()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads on a shared 2-core machine spin on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
