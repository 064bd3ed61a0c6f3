"""Helpers of the training tests: a hand-written ingest directory and splits.json, tiny params, a tiny CNN."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from renalmae import testing
from renalmae.data.cache import IMAGES_FILE, MASKS_FILE, TABLE_COLUMNS, TABLE_FILE

SIZE = 32
CLASSES = ["normal", "utd", "mcdk"]


def draw_images(labels: list[str | None], seed: int) -> np.ndarray:
    """Speckled grey squares; `utd` adds a dark disc, `mcdk` several small dark discs (easy to learn)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.empty((len(labels), SIZE, SIZE), dtype=np.uint8)
    for index, label in enumerate(labels):
        image = 140 + 30 * rng.standard_normal((SIZE, SIZE))
        if label == "utd":
            image[(yy - 16) ** 2 + (xx - 16) ** 2 < 49] = 20
        elif label == "mcdk":
            for cy, cx in rng.integers(6, SIZE - 6, size=(4, 2)):
                image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9] = 20
        images[index] = np.clip(image, 0, 255)
    return images


def write_ingest(directory: Path, labels: list[str], pool: int, seed: int = 0) -> pd.DataFrame:
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    all_labels = list(labels) + [None] * pool
    for index, label in enumerate(all_labels):
        image_id = f"img-{index:04d}"
        rows.append(
            {"id": image_id, "source": f"test://{image_id}", "sha256": f"{index:064x}", "label": label,
             "group": image_id, "width": SIZE, "height": SIZE, "mask": None, "fold": None, "split": None,
             "origin": "pool" if label is None else "labelled", "cache_index": index}
        )  # fmt: skip
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["fold"] = table["fold"].astype("Int64")
    table.to_parquet(directory / TABLE_FILE, index=False)
    images = draw_images(all_labels, seed)
    np.save(directory / IMAGES_FILE, images)
    np.save(directory / MASKS_FILE, np.zeros_like(images))
    return table


def write_splits(path: Path, table: pd.DataFrame, k: int = 2, test_fraction: float = 0.25) -> dict:
    labelled = table[table["origin"] == "labelled"]
    test, folds = [], [[] for _ in range(k)]
    for _, group in labelled.groupby("label"):
        ids = group["id"].tolist()
        n_test = max(1, int(round(len(ids) * test_fraction)))
        test += ids[:n_test]
        for position, image_id in enumerate(ids[n_test:]):
            folds[position % k].append(image_id)
    raw = {"k_folds": k, "seed": 0, "origin": "drawn", "test": test,
           "folds": [{"fold": f, "val": ids} for f, ids in enumerate(folds)]}  # fmt: skip
    path.write_text(json.dumps(raw))
    return raw


def make_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """(ingest_dir, splits_path): 72 labelled images (36 normal, 24 utd, 12 mcdk), 24 pool, 2 folds."""
    labels = ["normal"] * 36 + ["utd"] * 24 + ["mcdk"] * 12
    table = write_ingest(tmp_path / "ingested", labels, pool=24)
    write_splits(tmp_path / "splits.json", table)
    return tmp_path / "ingested", tmp_path / "splits.json"


TRAINING = {
    "data": {"image_size": SIZE, "classes": CLASSES},
    "encoder": {"depth": 2},
    "train": {"checkpoint_every_steps": 2, "log_every_steps": 1},
    "pretrain": {"epochs": 2, "base_lr": 1e-3},
    "finetune": {"epochs": 5, "base_lr": 4e-2, "layer_decay": 0.9},
}
tiny_params = partial(testing.tiny_params, TRAINING)


class TinyClassifier(nn.Module):
    """A few hundred parameters: enough to learn the dark-disc task in a few steps on the CPU."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU()
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(inputs).amax(dim=(2, 3)))
