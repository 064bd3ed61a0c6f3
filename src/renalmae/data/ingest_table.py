"""Building the ingest table's rows: from listed files and phantom URIs, unique ids, own groups, duplicates.

The `ingest` step fills these rows while decoding; `finish_table` turns them into the `TABLE_COLUMNS`
frame of `renalmae.data.cache`, and under `data.drop_duplicates` `duplicates_to_drop` plus
`compact_caches` remove repeated images from the table and both caches together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from renalmae.data.cache import IMAGES_FILE, MASKS_FILE, TABLE_COLUMNS
from renalmae.data.decode import pixel_sha256
from renalmae.data.near_duplicates import NearDuplicates, perceptual_hash
from renalmae.data.sources import Problem, SourceItem, check_label
from renalmae.params import DataParams, Params

COMPACT_CHUNK = 4096


def file_row(item: SourceItem, origin: str) -> dict:
    """A row for a listed file; id, sha256 and size are filled in once the file is decoded."""
    return {
        "id": None,
        "source": item.source,
        "sha256": None,
        "label": item.label,
        "group": item.group,
        "own_group": not item.group_given,
        "width": None,
        "height": None,
        "crop": None,
        "phash": None,
        "near_group": None,
        "mask": item.mask,
        "fold": item.fold,
        "split": item.split,
        "origin": origin,
    }


def phantom_block(
    uri: str, origin: str, params: Params
) -> tuple[list[dict], np.ndarray, np.ndarray, list[Problem]]:
    """Rows, images, masks (already at the working size) and label problems of a `phantom://` input."""
    from renalmae.data.phantom import generate_phantom, parse_phantom_uri

    spec = parse_phantom_uri(uri)
    size = params.data.image_size
    phantom = generate_phantom(
        n=spec.n,
        seed=spec.seed,
        image_size=size,
        difficulty=params.phantom.difficulty,
        class_fractions=tuple(params.phantom.class_fractions),
        unlabelled=spec.unlabelled or origin == "pool",
    )
    rows, problems = [], []
    hashing = params.data.near_duplicate_bits is not None
    for index, image_id in enumerate(phantom.ids):
        label = phantom.labels[index] if origin == "labelled" else None
        if label is not None and (rule := check_label(label, params.data.classes)):
            problems.append(Problem(f"{uri}#{index}", rule))
        rows.append(
            {
                "id": image_id,
                "source": f"{uri}#{index}",
                "sha256": pixel_sha256(phantom.images[index]),
                "label": label,
                "group": phantom.groups[index],
                "own_group": False,
                "width": size,
                "height": size,
                "crop": None,
                "phash": perceptual_hash(Image.fromarray(phantom.images[index])) if hashing else None,
                "near_group": None,
                "mask": f"{uri}#{index}:mask" if label is not None else None,
                "fold": None,
                "split": None,
                "origin": origin,
            }
        )
    return (
        rows,
        np.asarray(phantom.images, dtype=np.uint8),
        np.asarray(phantom.masks, dtype=np.uint8),
        problems,
    )


def unique_ids(ids: list[str]) -> list[str]:
    """Byte-identical copies share an id (a prefix of the file's sha256); later copies get `-2`, `-3`, ..."""
    seen: dict[str, int] = {}
    unique = []
    for image_id in ids:
        seen[image_id] = seen.get(image_id, 0) + 1
        unique.append(image_id if seen[image_id] == 1 else f"{image_id}-{seen[image_id]}")
    return unique


def finish_table(rows: list[dict], group_column: str) -> pd.DataFrame:
    """The table (all `TABLE_COLUMNS` but `cache_index`) with unique ids, own groups and column types."""
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:-1])
    table["id"] = unique_ids(table["id"].tolist())
    own_group = np.array([row["own_group"] or group_column == "none" for row in rows], dtype=bool)
    table.loc[own_group, "group"] = table.loc[own_group, "id"]
    table["fold"] = table["fold"].astype("Int64")
    table["split"] = table["split"].astype("str")
    table[["width", "height"]] = table[["width", "height"]].astype("int64")
    return table


def duplicates_to_drop(table: pd.DataFrame) -> dict[int, str]:
    """Rows to drop under data.drop_duplicates → why: every copy after the first of an image, or every
    copy when the copies carry conflicting labels (no label of theirs can be trusted)."""
    dropped = {}
    repeated = table[table["sha256"].duplicated(keep=False)]
    for _, copies in repeated.groupby("sha256", sort=False):
        labels = set(copies["label"].dropna())
        if len(labels) > 1:
            for row in copies.index:
                dropped[row] = (
                    f"same image under conflicting labels {sorted(labels)}: {list(copies['source'])}"
                )
        else:
            for row in copies.index[1:]:
                dropped[row] = f"duplicate of {copies['source'].iloc[0]}"
    return dropped


def rows_to_drop(table: pd.DataFrame, data: DataParams) -> dict[int, str]:
    """Rows to drop → why: repeated images under data.drop_duplicates, then both images of every pair of
    near-duplicates under different labels when data.near_duplicate_conflicts is `drop`."""
    dropped = duplicates_to_drop(table) if data.drop_duplicates else {}
    if data.near_duplicate_conflicts != "drop":
        return dropped
    kept = table.drop(index=list(dropped))
    near = NearDuplicates.find(kept, data.near_duplicate_bits)
    for pair in near.conflicting_pairs.itertuples():
        a, b = kept.index[pair.a], kept.index[pair.b]
        for row, other in ((a, b), (b, a)):
            dropped[row] = (
                f"near-duplicate ({pair.bits} of 256 hash bits differ) of {table.at[other, 'source']} "
                f"under another label ({table.at[row, 'label']} vs {table.at[other, 'label']})"
            )
    return dropped


def compact_caches(staging: Path, images: np.ndarray, masks: np.ndarray, keep: np.ndarray):
    """Rewrite images.npy and masks.npy in `staging` with only the rows `keep` (chunked over the memmaps)."""
    compacted = []
    for name, array in ((IMAGES_FILE, images), (MASKS_FILE, masks)):
        partial = staging / f"{name}.partial"
        out = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.uint8, shape=(len(keep),) + array.shape[1:]
        )
        for start in range(0, len(keep), COMPACT_CHUNK):
            out[start : start + COMPACT_CHUNK] = array[keep[start : start + COMPACT_CHUNK]]
        out.flush()
        del out
        partial.replace(staging / name)
        compacted.append(np.load(staging / name, mmap_mode="r+"))
    return compacted[0], compacted[1]
