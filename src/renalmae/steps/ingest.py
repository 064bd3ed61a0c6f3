"""Step `ingest`: read the labelled source and the pools once into a table and a uint8 memory-mapped cache.

Ingest reads, validate judges: every file that cannot be read or labelled is collected and reported
together in one `DataError` before the outputs are replaced; duplicates, leakage, class sizes and
blank images are recorded here and judged by the `validate` step.

`run` is `plan` (list the inputs), decoding in resumable shards, and `finish`. A Kubeflow run can spread
the decoding over pods: the plan is saved once, each pod runs `decode_part`, and `merge` finishes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from renalmae.data.cache import IMAGES_FILE, MASKS_FILE, SUMMARY_FILE, TABLE_FILE
from renalmae.data.cache_writer import (
    Block,
    IngestPlan,
    assemble_cache,
    decode_shards,
    gather_shards,
    plan_shards,
)
from renalmae.data.decode import DecodeTask, Failed, Preparation
from renalmae.data.ingest_table import (
    compact_caches,
    file_row,
    finish_table,
    phantom_block,
    rows_to_drop,
)
from renalmae.data.near_duplicates import NearDuplicates
from renalmae.data.sources import (
    Problem,
    bad_files_message,
    is_phantom,
    list_pool,
    list_source,
    pool_overlap_problems,
)
from renalmae.errors import DataError
from renalmae.io import atomic_dir, checkpoint_dir, remove_checkpoints, write_json
from renalmae.params import Params
from renalmae.pipeline import step

log = logging.getLogger(__name__)

STEP = step("ingest")


def run(params: Params, out_dir: str | Path) -> Path:
    started = time.perf_counter()
    ingest_plan = plan(params)
    # Decoded shards live beside the output, like training checkpoints: a killed ingest resumes from them.
    shard_dir = checkpoint_dir(params, out_dir, Path(out_dir).name)
    decoded = decode_shards(
        ingest_plan.shards, Preparation.from_data(params.data), params.data.decode_workers, shard_dir,
        params.train.progress,
    )  # fmt: skip
    finish(params, ingest_plan, decoded, dict.fromkeys(decoded, shard_dir), out_dir)
    remove_checkpoints(shard_dir)
    # Timings stay out of ingest.json: the same data must give the same bytes (DVC hashes this folder).
    seconds = time.perf_counter() - started
    rows = len(ingest_plan.rows)
    log.info("ingest: %d images in %.1f s (%.1f images/s)", rows, seconds, rows / max(seconds, 1e-9))
    return Path(out_dir)


def plan(params: Params) -> IngestPlan:
    """List the labelled source and the pools (no pixels decoded; phantom inputs generated) into a plan."""
    data = params.data
    inputs = [(data.source, "labelled")] + [(pool, "pool") for pool in data.pool]
    rows: list[dict] = []
    problems: list[Problem] = []
    blocks, tasks, listings = [], [], []
    for uri, origin in inputs:
        if is_phantom(uri):
            block_rows, images, masks, block_problems = phantom_block(uri, origin, params)
            blocks.append(Block(len(rows), images, masks))
            rows.extend(block_rows)
            problems.extend(block_problems)
            continue
        listing = (
            list_source(uri, data.classes, data.group_column) if origin == "labelled" else list_pool(uri)
        )
        problems.extend(listing.problems)
        listings.append((uri, origin, listing))
        for item in listing.items:
            tasks.append(DecodeTask(cache_index=len(rows), path=item.source, mask=item.mask))
            rows.append(file_row(item, origin))
    problems.extend(pool_overlap_problems(listings))
    shards = plan_shards(tasks, data.shard_size)
    return IngestPlan([uri for uri, _ in inputs], rows, shards, blocks, problems)


def decode_part(params: Params, plan_dir: str | Path, part: int, parts: int, out_dir: str | Path) -> Path:
    """Decode pod `part` of `parts`'s share of the shards of the saved plan into `out_dir` (Kubeflow)."""
    shards = IngestPlan.load(Path(plan_dir)).part(part, parts)
    decode_shards(shards, Preparation.from_data(params.data), params.data.decode_workers, out_dir, False)
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # a part without shards is an empty folder
    return Path(out_dir)


def merge(params: Params, plan_dir: str | Path, part_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Assemble the ingest output from a saved plan and the shards its parts decoded (Kubeflow)."""
    ingest_plan = IngestPlan.load(Path(plan_dir))
    preparation = Preparation.from_data(params.data)
    decoded, where = gather_shards(ingest_plan.shards, preparation, [Path(part) for part in part_dirs])
    return finish(params, ingest_plan, decoded, where, out_dir)


def finish(params: Params, ingest_plan: IngestPlan, decoded: dict[int, list], shard_dirs: dict[int, Path],
           out_dir: str | Path) -> Path:  # fmt: skip
    """Fill the rows from the decoded shards, refuse bad files (all at once), write the table and caches."""
    data, rows, problems = params.data, ingest_plan.rows, list(ingest_plan.problems)
    for shard in ingest_plan.shards:
        for result in decoded[shard.index]:
            if isinstance(result, Failed):
                problems.append(Problem(result.path, result.reason))
                continue
            rows[result.cache_index].update(
                id=result.file_sha256[:16], sha256=result.pixel_sha256, width=result.width,
                height=result.height, crop=result.crop, phash=result.phash,
            )  # fmt: skip
    if problems:
        if ingest_plan.shards:
            log.info("the decoded shards stay: the next run decodes only the files that changed")
        raise DataError(bad_files_message(problems))

    with atomic_dir(out_dir) as staging:
        shards = [(shard, shard_dirs[shard.index]) for shard in ingest_plan.shards]
        assemble_cache(staging, len(rows), data.image_size, shards, ingest_plan.blocks)
        table = finish_table(rows, data.group_column)
        dropped = rows_to_drop(table, data)
        if dropped:
            keep = np.setdiff1d(np.arange(len(table)), np.fromiter(dropped, dtype=np.int64))
            table = table.iloc[keep].reset_index(drop=True)
            images, masks = (np.load(staging / name, mmap_mode="r+") for name in (IMAGES_FILE, MASKS_FILE))
            images, masks = compact_caches(staging, images, masks, keep)
            images.flush()
            masks.flush()
            del images, masks
        near = NearDuplicates.find(table, data.near_duplicate_bits)
        table["near_group"] = near.near_groups()
        table["cache_index"] = np.arange(len(table), dtype=np.int64)
        table.to_parquet(staging / TABLE_FILE, index=False)
        write_json(
            staging / SUMMARY_FILE,
            {
                "inputs": ingest_plan.inputs,
                "image_size": data.image_size,
                "n_images": len(table),
                "labelled": {str(k): int(v) for k, v in table["label"].value_counts().sort_index().items()},
                "pool": int((table["origin"] == "pool").sum()),
                "repeated_images": int(table["sha256"].duplicated().sum()),
                "near_duplicates": near.summary(),
                "dropped_duplicates": [
                    {"source": rows[row]["source"], "reason": why} for row, why in dropped.items()
                ],
            },
        )
    return Path(out_dir)
