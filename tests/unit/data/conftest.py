"""Fixtures for data tests: an ingest directory (table + caches, see renalmae.data.cache) from the phantom."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

from renalmae.data.cache import IMAGES_FILE, MASKS_FILE, SUMMARY_FILE, TABLE_COLUMNS, TABLE_FILE
from renalmae.data.phantom import generate_phantom

TableHook = Callable[[pd.DataFrame], pd.DataFrame]

# property tests keep no example database in the working tree; a failure prints its reproducing example
settings.register_profile("renalmae", database=None, deadline=None, print_blob=True)
settings.load_profile("renalmae")


def write_ingest_dir(
    directory: Path,
    n: int = 80,
    seed: int = 0,
    image_size: int = 32,
    difficulty: float = 0.6,
    class_fractions: tuple[float, float, float] = (0.5, 0.3, 0.2),
    pool: int = 10,
    table_hook: TableHook | None = None,
) -> Path:
    """Write `directory` the way `renalmae ingest` does for `phantom://renal?n=<n>&seed=<seed>` plus a pool.

    `table_hook(table)` may change the table before it is written (e.g. set given `fold` / `split`).
    """
    labelled = generate_phantom(n, seed, image_size, difficulty, class_fractions)
    parts = [(labelled, f"phantom://renal?n={n}&seed={seed}", "labelled")]
    if pool:
        pool_images = generate_phantom(
            pool, seed + 1, image_size, difficulty, class_fractions, unlabelled=True
        )
        parts.append((pool_images, f"phantom://renal?n={pool}&seed={seed + 1}&unlabelled=true", "pool"))
    rows = []
    for phantom, uri, origin in parts:
        for image, label, image_id, group in zip(
            phantom.images, phantom.labels, phantom.ids, phantom.groups, strict=True
        ):
            rows.append(
                {
                    "id": image_id,
                    "source": uri,
                    "sha256": hashlib.sha256(image.tobytes()).hexdigest(),
                    "label": label,
                    "group": group,
                    "width": image_size,
                    "height": image_size,
                    "mask": None,
                    "fold": None,
                    "split": None,
                    "origin": origin,
                    "cache_index": len(rows),
                }
            )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["fold"] = table["fold"].astype("Int64")
    table["split"] = table["split"].astype("string")
    if table_hook is not None:
        table = table_hook(table)
    directory.mkdir(parents=True, exist_ok=True)
    table.to_parquet(directory / TABLE_FILE, index=False)
    np.save(directory / IMAGES_FILE, np.concatenate([phantom.images for phantom, _, _ in parts]))
    np.save(directory / MASKS_FILE, np.concatenate([phantom.masks for phantom, _, _ in parts]))
    summary = {"image_size": image_size, "counts": table.groupby("origin").size().to_dict()}
    (directory / SUMMARY_FILE).write_text(json.dumps(summary))
    return directory


@pytest.fixture
def make_ingest_dir() -> Callable[..., Path]:
    """Factory: `make_ingest_dir(tmp_path, n=..., seed=..., table_hook=...)` → an ingest directory."""

    def make(tmp_path: Path, **options) -> Path:
        return write_ingest_dir(tmp_path / "ingested", **options)

    return make
