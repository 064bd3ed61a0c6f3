"""Step `ingest`: read the labelled source and the pools once into a table and a uint8 memory-mapped cache.

Ingest reads, validate judges: every file that cannot be read or labelled is collected and reported
together in one `DataError` before the outputs are replaced; duplicates, leakage, class sizes and
blank images are recorded here and judged by the `validate` step.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.data.cache import IMAGES_FILE, MASKS_FILE, SUMMARY_FILE, TABLE_COLUMNS, TABLE_FILE
from renalmae.data.decode import DecodeTask, Failed, decode_all, pixel_sha256
from renalmae.data.sources import Listing, Problem, check_label, is_phantom, list_pool, list_source
from renalmae.errors import DataError
from renalmae.io import atomic_dir, write_json
from renalmae.params import Params

MAX_LISTED_PROBLEMS = 10


def _phantom_rows(
    uri: str, origin: str, params: Params, listing: Listing
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    from renalmae.data.phantom import generate_phantom, parse_phantom_uri

    spec = parse_phantom_uri(uri)
    phantom = generate_phantom(
        n=spec.n,
        seed=spec.seed,
        image_size=params.data.image_size,
        difficulty=params.phantom.difficulty,
        class_fractions=tuple(params.phantom.class_fractions),
        unlabelled=spec.unlabelled or origin == "pool",
    )
    rows = []
    for index, image_id in enumerate(phantom.ids):
        label = phantom.labels[index] if origin == "labelled" else None
        if label is not None and (rule := check_label(label, params.data.classes)):
            listing.problems.append(Problem(f"{uri}#{index}", rule))
        rows.append(
            {
                "id": image_id,
                "source": f"{uri}#{index}",
                "sha256": pixel_sha256(phantom.images[index]),
                "label": label,
                "group": phantom.groups[index] if params.data.group_column != "none" else image_id,
                "width": params.data.image_size,
                "height": params.data.image_size,
                "mask": f"{uri}#{index}:mask" if label is not None else None,
                "fold": None,
                "split": None,
                "origin": origin,
            }
        )
    return rows, np.asarray(phantom.images, dtype=np.uint8), np.asarray(phantom.masks, dtype=np.uint8)


def _raise_problems(problems: list[Problem]) -> None:
    listed = "\n  ".join(str(problem) for problem in problems[:MAX_LISTED_PROBLEMS])
    more = (
        f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more"
        if len(problems) > MAX_LISTED_PROBLEMS
        else ""
    )
    raise DataError(
        f"{len(problems)} bad input file(s); fix or remove them and run `renalmae ingest` again "
        f"(nothing was written):\n  {listed}{more}"
    )


def _unique_ids(ids: list[str]) -> list[str]:
    """Byte-identical copies share an id prefix; later copies get `-2`, `-3`, ... so ids stay unique."""
    seen: dict[str, int] = {}
    unique = []
    for image_id in ids:
        seen[image_id] = seen.get(image_id, 0) + 1
        unique.append(image_id if seen[image_id] == 1 else f"{image_id}-{seen[image_id]}")
    return unique


def duplicates_to_drop(table: pd.DataFrame) -> dict[int, str]:
    """Rows to drop under data.drop_duplicates: row → reason (the first copy of each image is kept,
    unless its copies carry conflicting labels, when every copy goes)."""
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


def run(params: Params, out_dir: str | Path) -> Path:
    data = params.data
    started = time.perf_counter()
    inputs = [(data.source, "labelled")] + [(pool, "pool") for pool in data.pool]
    rows: list[dict] = []
    problems = Listing()
    phantom_blocks, tasks = [], []
    for uri, origin in inputs:
        if is_phantom(uri):
            block_rows, images, masks = _phantom_rows(uri, origin, params, problems)
            phantom_blocks.append((len(rows), images, masks))
            rows.extend(block_rows)
            continue
        listing = (
            list_source(uri, data.classes, data.group_column) if origin == "labelled" else list_pool(uri)
        )
        problems.problems.extend(listing.problems)
        for item in listing.items:
            tasks.append(DecodeTask(cache_index=len(rows), path=item.source, mask=item.mask))
            rows.append(
                {
                    "id": None,
                    "source": item.source,
                    "sha256": None,
                    "label": item.label,
                    "group": item.group if item.group_given else None,
                    "group_given": item.group_given,
                    "width": None,
                    "height": None,
                    "mask": item.mask,
                    "fold": item.fold,
                    "split": item.split,
                    "origin": origin,
                }
            )

    size = data.image_size
    with atomic_dir(out_dir) as staging:
        images = np.lib.format.open_memmap(
            staging / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(rows), size, size)
        )
        masks = np.lib.format.open_memmap(
            staging / MASKS_FILE, mode="w+", dtype=np.uint8, shape=(len(rows), size, size)
        )
        for start, block_images, block_masks in phantom_blocks:
            images[start : start + len(block_images)] = block_images
            masks[start : start + len(block_masks)] = block_masks
        for result in decode_all(
            tasks, size, data.max_image_pixels, data.decode_workers, params.train.progress
        ):
            if isinstance(result, Failed):
                problems.problems.append(Problem(result.path, result.reason))
                continue
            row = rows[result.cache_index]
            row.update(
                id=result.file_sha256[:16],
                sha256=result.pixel_sha256,
                width=result.width,
                height=result.height,
            )
            images[result.cache_index] = result.image
            masks[result.cache_index] = result.mask
        if problems.problems:
            _raise_problems(problems.problems)

        table = pd.DataFrame(rows, columns=TABLE_COLUMNS[:-1])
        table["id"] = _unique_ids(table["id"].tolist())
        own_group = [not row.get("group_given", True) or data.group_column == "none" for row in rows]
        table.loc[own_group, "group"] = table.loc[own_group, "id"]
        table["fold"] = table["fold"].astype("Int64")
        table[["width", "height"]] = table[["width", "height"]].astype("int64")
        dropped = duplicates_to_drop(table) if data.drop_duplicates else {}
        if dropped:
            keep = np.setdiff1d(np.arange(len(table)), np.fromiter(dropped, dtype=np.int64))
            table = table.iloc[keep].reset_index(drop=True)
            images, masks = _compact(staging, images, masks, keep)
        table["cache_index"] = np.arange(len(table), dtype=np.int64)
        images.flush()
        masks.flush()
        del images, masks
        table.to_parquet(staging / TABLE_FILE, index=False)
        seconds = time.perf_counter() - started
        write_json(
            staging / SUMMARY_FILE,
            {
                "inputs": [uri for uri, _ in inputs],
                "image_size": size,
                "n_images": len(table),
                "labelled": {str(k): int(v) for k, v in table["label"].value_counts().sort_index().items()},
                "pool": int((table["origin"] == "pool").sum()),
                "repeated_images": int(table["sha256"].duplicated().sum()),
                "dropped_duplicates": [
                    {"source": rows[row]["source"], "reason": why} for row, why in dropped.items()
                ],
                "seconds": round(seconds, 3),
                "images_per_second": round(len(rows) / seconds, 1) if seconds > 0 else None,
            },
        )
    return Path(out_dir)


def _compact(staging: Path, images: np.ndarray, masks: np.ndarray, keep: np.ndarray):
    """Rewrite both caches with only the rows in `keep` (chunked, so the cache never sits in memory)."""
    compacted = []
    for name, array in ((IMAGES_FILE, images), (MASKS_FILE, masks)):
        partial = staging / f"{name}.partial"
        out = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.uint8, shape=(len(keep),) + array.shape[1:]
        )
        for start in range(0, len(keep), 4096):
            out[start : start + 4096] = array[keep[start : start + 4096]]
        out.flush()
        del out
        partial.replace(staging / name)
        compacted.append(np.load(staging / name, mmap_mode="r+"))
    return compacted[0], compacted[1]
