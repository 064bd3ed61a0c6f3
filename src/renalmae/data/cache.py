"""The ingested data set on disk: one table plus memory-mapped uint8 image and mask caches.

Contract (written by the `ingest` step, read by every later step):

    <ingest_dir>/table.parquet   one row per image, columns `TABLE_COLUMNS`
    <ingest_dir>/images.npy      uint8 [N, S, S] greyscale at the working resolution S
    <ingest_dir>/masks.npy       uint8 [N, S, S] lesion mask (0/1); all zeros where the input has none
    <ingest_dir>/ingest.json     summary: counts per label and origin, source URIs, image size

Row `i` of the table is `images[i]` / `masks[i]` (`cache_index == i`). `origin` is `labelled` for
rows of `data.source` and `pool` for rows of the unlabelled pools (their `label` is null).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae import artifacts
from renalmae.errors import DataError

TABLE_FILE = artifacts.IngestedData.TABLE
IMAGES_FILE = artifacts.IngestedData.IMAGES
MASKS_FILE = artifacts.IngestedData.MASKS
SUMMARY_FILE = artifacts.IngestedData.SUMMARY

TABLE_COLUMNS = [
    "id",  # stable image id: sha256 prefix of the source bytes (phantom: `phantom-<seed>-<index>`)
    "source",  # source path or URI as given
    "sha256",  # of the decoded, cropped pixels at full resolution: re-encoded copies count as duplicates
    "label",  # class name, or null for pool images
    "group",  # patient / series id; the id itself when the input has no groups
    "width",  # original width in pixels (upright: EXIF orientation applied)
    "height",  # original height in pixels (upright)
    "crop",  # box `x0,y0,x1,y1` cut from the upright image and its mask (data.crop), or null
    "phash",  # 256-bit perceptual hash (64 hex digits) of the cropped pixels (renalmae.data.near_duplicates)
    "near_group",  # id of the first image of its cluster of labelled near-duplicates, or null
    "mask",  # source path of the mask, or null
    "fold",  # fold given by the input (nullable Int64), else null
    "split",  # split given by the input (`train` / `test`), else null
    "origin",  # `labelled` or `pool`
    "cache_index",  # row in images.npy / masks.npy
]


@dataclass(frozen=True)
class IngestedData:
    """An ingested data set: the table and read-only memory maps of its caches."""

    directory: Path
    table: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray

    @property
    def labelled(self) -> pd.DataFrame:
        return self.table[self.table["origin"] == "labelled"]

    @property
    def pool(self) -> pd.DataFrame:
        return self.table[self.table["origin"] == "pool"]

    def rows(self, ids: list[str]) -> pd.DataFrame:
        """Table rows for `ids`, in that order."""
        indexed = self.table.set_index("id", drop=False)
        missing = [image_id for image_id in ids if image_id not in indexed.index]
        if missing:
            raise DataError(
                f"{len(missing)} ids (e.g. {missing[:3]}) are not in {self.directory / TABLE_FILE}; "
                "the splits were made from another ingest: run `renalmae split` again"
            )
        return indexed.loc[ids].reset_index(drop=True)


def load_ingested(ingest_dir: str | os.PathLike) -> IngestedData:
    """Open an ingest output directory (images and masks memory-mapped, not read)."""
    ingest_dir = Path(ingest_dir)
    for name in (TABLE_FILE, IMAGES_FILE, MASKS_FILE):
        if not (ingest_dir / name).is_file():
            raise DataError(f"{ingest_dir / name} is missing; run `renalmae ingest` first")
    table = pd.read_parquet(ingest_dir / TABLE_FILE)
    images = np.load(ingest_dir / IMAGES_FILE, mmap_mode="r")
    masks = np.load(ingest_dir / MASKS_FILE, mmap_mode="r")
    if len(table) != len(images) or images.shape != masks.shape:
        raise DataError(
            f"{ingest_dir}: table has {len(table)} rows but images {images.shape} / masks {masks.shape}; "
            "the ingest output is inconsistent: run `renalmae ingest` again"
        )
    return IngestedData(directory=ingest_dir, table=table, images=images, masks=masks)
