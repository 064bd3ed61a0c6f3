"""Training batches from the uint8 cache: on the device all at once, or streamed; a seeded resumable sampler.

A data set whose images fit in `train.device_cache_bytes` is copied onto the device once (in chunks,
pinned + non-blocking on CUDA) and a batch is an index into it. A larger pool streams: a background
thread reads each batch's rows from the memory-mapped cache into pinned host memory and copies them to
the device on a side stream, a few batches ahead of the loop; the loop's next step waits on that copy
on the device, never on the host. Both sources hand the loop the same uint8 batches in the same order,
and augmentation happens on the device either way, so a streamed run trains exactly like a resident one.

The sampler's order in an epoch is a pure function of (seed, epoch), so its state is just (epoch,
position) and a resumed run draws exactly the batches the interrupted one would have. Under data
parallelism each rank takes its contiguous share of every global batch.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psutil
import torch

from renalmae.errors import DataError

log = logging.getLogger(__name__)

CLASS_BALANCE_MODES = ("sampler", "loss", "none")


def class_weights(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, normalised to mean 1 over the samples; refuses an empty class."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        empty = [index for index, count in enumerate(counts) if count == 0]
        raise DataError(
            f"class indices {empty} have no training images in this fold; "
            "use more data or fewer folds (split.folds)"
        )
    weights = counts.sum() / (num_classes * counts)
    return weights


@dataclass
class SamplerState:
    epoch: int = 0
    position: int = 0
    """Global batches of `epoch` already consumed."""


class BatchSampler:
    """Seeded batches of indices; `sampler` mode draws class-balanced with replacement.

    Drops the last incomplete batch (so every data-parallel rank gets the same share); a set smaller
    than the batch size trains on one batch of all of it.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        targets: Sequence[int] | np.ndarray | None = None,
        balance: str = "none",
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_samples == 0:
            raise DataError("no training images: the training set is empty")
        if balance not in CLASS_BALANCE_MODES:
            raise ValueError(f"class balance must be one of {CLASS_BALANCE_MODES}, got {balance}")
        if balance == "sampler" and targets is None:
            raise ValueError("class-balanced sampling needs targets")
        global_batch = min(batch_size, num_samples)
        self.local_batch = max(1, global_batch // world_size)
        self.global_batch = self.local_batch * world_size
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.sample_weights = None
        if balance == "sampler":
            targets = np.asarray(targets)
            counts = np.bincount(targets)
            self.sample_weights = torch.as_tensor(1.0 / counts[targets], dtype=torch.float64)
        self.state = SamplerState()

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.num_samples // self.global_batch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.sample_weights is not None:
            return torch.multinomial(
                self.sample_weights, self.num_samples, replacement=True, generator=generator
            )
        return torch.randperm(self.num_samples, generator=generator)

    def remaining(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(position, local indices) for the rest of the current epoch, without advancing the state."""
        order = self.epoch_order(self.state.epoch)
        for position in range(self.state.position, self.batches_per_epoch):
            start = position * self.global_batch + self.rank * self.local_batch
            yield position, order[start : start + self.local_batch]

    def batches(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (position, local indices) for the rest of the current epoch, advancing the state."""
        for position, indices in self.remaining():
            self.state.position = position + 1
            yield position, indices

    def next_epoch(self) -> None:
        self.state = SamplerState(epoch=self.state.epoch + 1, position=0)

    def state_dict(self) -> dict:
        return {"epoch": self.state.epoch, "position": self.state.position}

    def load_state_dict(self, state: dict) -> None:
        self.state = SamplerState(epoch=int(state["epoch"]), position=int(state["position"]))


DEVICE_CACHE_FRACTION = 0.5
"""Default `train.device_cache_bytes`: this share of the device's free memory (host memory on the CPU),
measured once the model is on the device; the rest is left to activations and the optimizer."""
UPLOAD_CHUNK_BYTES = 256 * 2**20
"""A resident upload goes through pinned host memory this many bytes at a time (bounded host memory)."""
PREFETCH_BATCHES = 4
"""Streamed batches read and copied ahead of the training step."""


@dataclass(frozen=True)
class CachedImages:
    """Rows `rows` of a uint8 image cache `[N, H, W]` (usually the read-only memory map of `images.npy`).

    Nothing is read until `read` is called, so a pool larger than host memory can be handed to `fit`.
    """

    cache: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, images: np.ndarray | torch.Tensor | CachedImages) -> CachedImages:
        """`images` itself, or every row of a uint8 array / CPU tensor `[N, H, W]`."""
        if isinstance(images, CachedImages):
            return images
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        return cls(images, np.arange(len(images), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.cache.shape[1:])

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.image_shape)) * self.cache.itemsize

    def read(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 `[len(indices), H, W]`: the images at positions `indices`, in that order (into `out`).

        Rows are read in ascending cache order (sequential access on a memory map) and put back in place.
        """
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        ascending = np.argsort(rows, kind="stable")
        if out is None:
            out = np.empty((len(rows), *self.image_shape), dtype=np.uint8)
        out[ascending] = self.cache[rows[ascending]]
        return out


def device_cache_budget(setting: int | None, device: torch.device) -> int:
    """Bytes of images that may live on `device`: `setting`, or `DEVICE_CACHE_FRACTION` of what is free."""
    if setting is not None:
        return setting
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = psutil.virtual_memory().available
    return int(DEVICE_CACHE_FRACTION * free)


class ResidentImages:
    """Every image copied onto the device once; a batch is an index into that one uint8 tensor."""

    streamed = False

    def __init__(self, images: CachedImages, device: torch.device):
        self.device = device
        self.images = torch.empty((len(images), *images.image_shape), dtype=torch.uint8, device=device)
        chunk = max(1, UPLOAD_CHUNK_BYTES // max(1, images.nbytes // max(1, len(images))))
        for start in range(0, len(images), chunk):
            stop = min(start + chunk, len(images))
            host = torch.from_numpy(images.read(np.arange(start, stop)))
            if device.type == "cuda":
                host = host.pin_memory()
            self.images[start:stop].copy_(host, non_blocking=device.type == "cuda")

    def batches(self, sampler: BatchSampler) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(position, local indices on the device, uint8 images [B, H, W] on the device) per batch."""
        for position, indices in sampler.batches():
            indices = indices.to(self.device)
            yield position, indices, self.images[indices]


class StreamedImages:
    """Batches read from the cache on a background thread, `prefetch` batches ahead of the loop.

    On CUDA each batch is read straight into pinned host memory and copied on a side stream; the loop's
    stream waits for that copy on the device (an event), so the host never blocks on a transfer. The
    sampler's state advances only as the loop takes a batch, so a checkpoint taken mid-epoch resumes at
    the batch the loop was on, however far the reader had run ahead.
    """

    streamed = True

    def __init__(self, images: CachedImages, device: torch.device, prefetch: int = PREFETCH_BATCHES):
        self.images = images
        self.device = device
        self.prefetch = prefetch

    def batches(self, sampler: BatchSampler) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(position, local indices on the device, uint8 images [B, H, W] on the device) per batch."""
        plan = list(sampler.remaining())
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read_ahead, args=(plan, ready, stop), name="renalmae-batch-reader", daemon=True
        )
        reader.start()
        try:
            for _ in plan:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                position, indices, batch, copied = item
                if copied is not None:
                    stream = torch.cuda.current_stream(self.device)
                    stream.wait_event(copied)
                    batch.record_stream(stream)
                sampler.state.position = position + 1
                yield position, indices.to(self.device), batch
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)
            reader.join()

    def _read_ahead(self, plan, ready: queue.Queue, stop: threading.Event) -> None:
        def hand_over(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            cuda = self.device.type == "cuda"
            side_stream = torch.cuda.Stream(self.device) if cuda else None
            shape = self.images.image_shape
            for position, indices in plan:
                host = torch.empty((len(indices), *shape), dtype=torch.uint8, pin_memory=cuda)
                self.images.read(indices.numpy(), out=host.numpy())
                copied = None
                if cuda:
                    with torch.cuda.stream(side_stream):
                        batch = host.to(self.device, non_blocking=True)
                        copied = torch.cuda.Event()
                        copied.record(side_stream)
                else:
                    batch = host
                if not hand_over((position, indices, batch, copied)):
                    return
        except BaseException as error:  # re-raised in the training loop, which owns the error
            hand_over(error)


def batch_source(
    images: np.ndarray | torch.Tensor | CachedImages, device: torch.device, budget_bytes: int | None
) -> ResidentImages | StreamedImages:
    """Resident on `device` when the images fit in `device_cache_budget(budget_bytes)`, else streamed."""
    images = CachedImages.of(images)
    budget = device_cache_budget(budget_bytes, device)
    if images.nbytes <= budget:
        return ResidentImages(images, device)
    log.info(
        "streaming %d images (%.2f GB) from the cache: more than the device cache budget of %.2f GB "
        "(train.device_cache_bytes)",
        len(images), images.nbytes / 1e9, budget / 1e9,
    )  # fmt: skip
    return StreamedImages(images, device)
