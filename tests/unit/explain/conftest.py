"""Fixtures for the explain tests: one torch thread (the CI box is shared), a tiny ingested phantom set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from explainkit import tiny_params

from renalmae.io import write_json


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Two OpenMP threads on an oversubscribed 2-core box run ~20x slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_ingest(tmp_path_factory) -> tuple[Path, Path]:
    """(ingest dir, splits.json) of 48 phantom images at 32 px; the last third of each class is held out."""
    from renalmae.data.cache import load_ingested
    from renalmae.steps.ingest import run as ingest

    root = tmp_path_factory.mktemp("explain-data")
    ingest_dir = ingest(tiny_params(), out_dir=root / "ingested")
    table = load_ingested(ingest_dir).labelled.sort_values("id")
    test_ids = [i for _, rows in table.groupby("label") for i in rows["id"].tolist()[-(len(rows) // 3) :]]
    development = [i for i in table["id"] if i not in set(test_ids)]
    splits_path = root / "splits.json"
    write_json(
        splits_path,
        {"k_folds": 2, "seed": 0, "origin": "drawn", "test": test_ids,
         "folds": [{"fold": 0, "val": development[0::2]}, {"fold": 1, "val": development[1::2]}]},
    )  # fmt: skip
    return Path(ingest_dir), splits_path
