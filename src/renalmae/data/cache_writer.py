"""Writing the ingest cache shard by shard: bounded memory, resumable after a kill, splittable across pods.

The files an ingest decodes are cut into shards of at most `data.shard_size` consecutive cache rows.
A worker decodes a shard into its own directory — `images.npy`, `masks.npy` (only when one of its files
has a mask) and `rows.json` (what the table needs of each file, or the rule it broke) — written under a
temporary name and renamed into place once complete. A finished shard whose fingerprint still matches
(its files' paths, sizes and modification times, the `Preparation` and the decoder's source) is reused,
so an ingest killed midway redoes only the shards it had not finished.

`assemble_cache` then copies the shards, and the in-memory blocks of phantom inputs, into the final
`images.npy` / `masks.npy` with file-to-file copies, never mapping the whole cache: memory stays at one
shard per worker whatever the pool size, and rows without a mask stay holes (zeros) in a sparse file.

The same functions serve one machine (`decode_shards` over a process pool) and a Kubeflow run, where an
`IngestPlan` (the listed rows and files, cut into shards) is saved once, each pod of a ParallelFor decodes
its part of the shards into its own directory, and one task gathers them (`gather_shards`) and assembles.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renalmae.data import decode
from renalmae.data.cache import IMAGES_FILE, MASKS_FILE
from renalmae.data.decode import Decoded, DecodeTask, Failed, Preparation, decode_chunk
from renalmae.data.sources import Problem
from renalmae.errors import DataError

log = logging.getLogger(__name__)

SHARD_PREFIX = "shard-"
ROWS_FILE = "rows.json"
PLAN_FILE = "plan.json"
COPY_CHUNK_BYTES = 64 * 2**20
DECODER_DIGEST = hashlib.sha256(
    b"".join(path.read_bytes() for path in sorted(Path(decode.__file__).parent.glob("*.py")))
).hexdigest()
"""A shard decoded by other decoding code is not reused."""
PIXEL_FIELDS = ("image", "mask")


@dataclass(frozen=True)
class Shard:
    """Consecutive cache rows `tasks[0].cache_index ...` decoded, stored and resumed as one unit."""

    index: int
    tasks: tuple[DecodeTask, ...]

    @property
    def name(self) -> str:
        return f"{SHARD_PREFIX}{self.index:05d}"

    @property
    def start(self) -> int:
        return self.tasks[0].cache_index

    def fingerprint(self, preparation: Preparation) -> str:
        """sha256 of the shard's files (path, size, mtime), how they are prepared, and the decoder's code."""
        digest = hashlib.sha256(f"{preparation!r}:{DECODER_DIGEST}".encode())
        for task in self.tasks:
            for path in (task.path, task.mask):
                digest.update(f"|{task.cache_index}:{path}:{_file_state(path)}".encode())
        return digest.hexdigest()


def _file_state(path: str | None) -> str:
    if path is None:
        return "-"
    try:
        stat = os.stat(path)
    except OSError:
        return "unreadable"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def plan_shards(tasks: Sequence[DecodeTask], shard_size: int) -> list[Shard]:
    """Cut `tasks` (in cache order) into shards of at most `shard_size` consecutive cache rows."""
    shards: list[Shard] = []
    run: list[DecodeTask] = []
    for task in tasks:
        if run and (task.cache_index != run[-1].cache_index + 1 or len(run) == shard_size):
            shards.append(Shard(len(shards), tuple(run)))
            run = []
        run.append(task)
    if run:
        shards.append(Shard(len(shards), tuple(run)))
    return shards


def write_shard(shard: Shard, preparation: Preparation, directory: Path, fingerprint: str) -> list:
    """Decode `shard` into `directory/<shard name>/` (atomically); return its `Decoded` / `Failed` results.

    Runs in a worker process: what travels back is the table's metadata, never pixels.
    """
    results = decode_chunk(list(shard.tasks), preparation)
    images = np.zeros((len(shard.tasks), preparation.size, preparation.size), dtype=np.uint8)
    has_masks = any(task.mask is not None for task in shard.tasks)
    masks = np.zeros_like(images) if has_masks else None
    records = []
    for offset, result in enumerate(results):
        if isinstance(result, Decoded):
            images[offset] = result.image
            if masks is not None:
                masks[offset] = result.mask
        records.append(_record(result))
    staging = Path(tempfile.mkdtemp(prefix=f".{shard.name}.tmp-", dir=directory))
    try:
        np.save(staging / IMAGES_FILE, images)
        if masks is not None:
            np.save(staging / MASKS_FILE, masks)
        payload = {"fingerprint": fingerprint, "start": shard.start, "rows": records}
        (staging / ROWS_FILE).write_text(json.dumps(payload, default=_plain))
        final = directory / shard.name
        if final.exists():  # a stale shard of another fingerprint
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [_result(record) for record in records]


def load_shard(directory: Path, shard: Shard, fingerprint: str) -> list | None:
    """The results of a finished shard in `directory` with this fingerprint, else None (decode it again)."""
    rows_file = directory / shard.name / ROWS_FILE
    if not rows_file.is_file():
        return None
    try:
        payload = json.loads(rows_file.read_text())
    except (OSError, ValueError):
        return None
    if payload.get("fingerprint") != fingerprint or len(payload.get("rows", ())) != len(shard.tasks):
        return None
    return [_result(record) for record in payload["rows"]]


def decode_shards(
    shards: Sequence[Shard],
    preparation: Preparation,
    workers: int,
    directory: str | os.PathLike,
    progress: bool = True,
) -> dict[int, list]:
    """Decode every shard not already finished in `directory`; `{shard index: [Decoded | Failed]}`.

    `workers` processes (0 = in this process). Half-written shards (temporary directories left by a
    kill) are removed first. The `Decoded` results carry no pixels: those are in the shard files.
    """
    from tqdm import tqdm

    directory = Path(directory)
    if not shards:
        return {}
    directory.mkdir(parents=True, exist_ok=True)
    for torn in directory.glob(f".{SHARD_PREFIX}*.tmp-*"):
        shutil.rmtree(torn, ignore_errors=True)
    results: dict[int, list] = {}
    todo: list[tuple[Shard, str]] = []
    for shard in shards:
        fingerprint = shard.fingerprint(preparation)
        finished = load_shard(directory, shard, fingerprint)
        if finished is None:
            todo.append((shard, fingerprint))
        else:
            results[shard.index] = finished
    if results:
        log.info(
            "ingest resumes: %d of %d shards already decoded in %s", len(results), len(shards), directory
        )
    total = sum(len(shard.tasks) for shard, _ in todo)
    with tqdm(total=total, unit="img", desc="decode", disable=not progress or not todo) as bar:
        if workers == 0:
            for shard, fingerprint in todo:
                results[shard.index] = write_shard(shard, preparation, directory, fingerprint)
                bar.update(len(shard.tasks))
            return results
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {
                pool.submit(write_shard, shard, preparation, directory, fingerprint): shard
                for shard, fingerprint in todo
            }
            for future in concurrent.futures.as_completed(futures):
                shard = futures[future]
                results[shard.index] = future.result()
                bar.update(len(shard.tasks))
    return results


@dataclass(frozen=True)
class Block:
    """Rows `start ...` of the cache already in memory (a phantom input): images and masks [n, S, S]."""

    start: int
    images: np.ndarray
    masks: np.ndarray


def assemble_cache(
    out_dir: Path,
    n_rows: int,
    size: int,
    shards: Iterable[tuple[Shard, Path]],
    blocks: Iterable[Block] = (),
) -> None:
    """Write `out_dir/images.npy` and `masks.npy` (uint8 [n_rows, size, size]) from finished shards (each
    with the directory holding it) and in-memory blocks, by file copies: memory stays bounded."""
    shards, blocks = list(shards), list(blocks)
    row_bytes = size * size
    for name in (IMAGES_FILE, MASKS_FILE):
        with open(out_dir / name, "wb") as target:
            header = _write_header(target, (n_rows, size, size))
            for shard, directory in shards:
                source = directory / shard.name / name
                if source.is_file():
                    _copy_array_data(
                        source, target, header + shard.start * row_bytes, len(shard.tasks) * row_bytes
                    )
            for block in blocks:
                target.seek(header + block.start * row_bytes)
                target.write(np.ascontiguousarray(block.images if name == IMAGES_FILE else block.masks).data)
            target.truncate(header + n_rows * row_bytes)  # rows never written (no mask) read as zeros


def shard_directories(directory: Path) -> list[Path]:
    """The finished shard directories under `directory`."""
    return sorted(path for path in directory.glob(f"{SHARD_PREFIX}*") if path.is_dir())


def _write_header(target, shape: tuple[int, ...]) -> int:
    np.lib.format.write_array_header_1_0(target, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return target.tell()


def _copy_array_data(source: Path, target, target_offset: int, expected_bytes: int) -> None:
    with open(source, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(handle)
        if dtype != np.uint8 or int(np.prod(shape)) != expected_bytes:
            raise ValueError(f"{source} holds {dtype} {shape}, not the {expected_bytes} bytes of its shard")
        source_offset = handle.tell()
        target.flush()
        remaining = expected_bytes
        while remaining:
            copied = _copy_range(handle.fileno(), target.fileno(), min(remaining, COPY_CHUNK_BYTES),
                                 source_offset, target_offset)  # fmt: skip
            if copied == 0:
                raise ValueError(f"{source} ended {remaining} bytes early")
            source_offset, target_offset, remaining = (
                source_offset + copied,
                target_offset + copied,
                remaining - copied,
            )


def _copy_range(source: int, target: int, count: int, source_offset: int, target_offset: int) -> int:
    """Copy inside the kernel where the file system allows it, else through one bounded buffer."""
    try:
        return os.copy_file_range(source, target, count, source_offset, target_offset)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    chunk = os.pread(source, count, source_offset)
    return os.pwrite(target, chunk, target_offset) if chunk else 0


def _record(result: Decoded | Failed) -> dict:
    fields = {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}
    if isinstance(result, Failed):
        return {"failed": True, **fields}
    return {"failed": False, **{key: value for key, value in fields.items() if key not in PIXEL_FIELDS}}


def _result(record: dict) -> Decoded | Failed:
    record = dict(record)
    if record.pop("failed"):
        return Failed(**record)
    return Decoded(**record, **dict.fromkeys(PIXEL_FIELDS))


def _plain(value):
    """JSON for numpy values a decoder may put in its results."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclass
class IngestPlan:
    """An ingest before any pixel is decoded: the table's rows so far (in cache order), the files to decode
    cut into shards, the in-memory blocks of phantom inputs, and the rules already broken."""

    inputs: list[str]
    rows: list[dict]
    shards: list[Shard]
    blocks: list[Block]
    problems: list[Problem]

    def part(self, part: int, parts: int) -> list[Shard]:
        """The shards pod `part` of `parts` decodes (every `parts`-th one)."""
        return self.shards[part::parts]

    def save(self, directory: Path) -> None:
        """`plan.json` plus one `.npz` per phantom block, in `directory` (made)."""
        directory.mkdir(parents=True, exist_ok=True)
        for block in self.blocks:
            np.savez(directory / f"block-{block.start}.npz", images=block.images, masks=block.masks)
        payload = {
            "inputs": self.inputs,
            "rows": self.rows,
            "shards": [[[t.cache_index, t.path, t.mask] for t in shard.tasks] for shard in self.shards],
            "blocks": [block.start for block in self.blocks],
            "problems": [[problem.where, problem.rule] for problem in self.problems],
        }
        (directory / PLAN_FILE).write_text(json.dumps(payload, default=_plain))

    @classmethod
    def load(cls, directory: Path) -> IngestPlan:
        """The plan `save` wrote in `directory`."""
        payload = json.loads((directory / PLAN_FILE).read_text())
        blocks = []
        for start in payload["blocks"]:
            with np.load(directory / f"block-{start}.npz") as arrays:
                blocks.append(Block(start, arrays["images"], arrays["masks"]))
        shards = [
            Shard(index, tuple(DecodeTask(*task) for task in tasks))
            for index, tasks in enumerate(payload["shards"])
        ]
        problems = [Problem(where, rule) for where, rule in payload["problems"]]
        return cls(payload["inputs"], payload["rows"], shards, blocks, problems)


def gather_shards(
    shards: Sequence[Shard], preparation: Preparation, directories: Sequence[Path]
) -> tuple[dict[int, list], dict[int, Path]]:
    """The results of every shard, found among `directories` (the parts' outputs), and where each is.

    Raises `DataError` when a shard is missing or was decoded from files that have changed since.
    """
    results: dict[int, list] = {}
    where: dict[int, Path] = {}
    for shard in shards:
        fingerprint = shard.fingerprint(preparation)
        for directory in directories:
            found = load_shard(directory, shard, fingerprint)
            if found is not None:
                results[shard.index], where[shard.index] = found, directory
                break
        else:
            raise DataError(
                f"ingest shard {shard.name} (rows {shard.start}-{shard.start + len(shard.tasks) - 1}, e.g. "
                f"{shard.tasks[0].path}) is in none of the decoded parts, or its files changed since they "
                "were decoded: run the pipeline again"
            )
    return results, where
