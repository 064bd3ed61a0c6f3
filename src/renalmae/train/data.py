"""Training batches from the uint8 cache: images moved to the device once, a seeded resumable sampler.

The data sets are small, so the needed rows of the memory-mapped cache are copied into one uint8 tensor
on the device up front (pinned + non-blocking on CUDA) and a batch is an index into it. The sampler's
order in an epoch is a pure function of (seed, epoch), so its state is just (epoch, position) and a
resumed run draws exactly the batches the interrupted one would have. Under data parallelism each rank
takes its contiguous share of every global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from renalmae.errors import DataError

CLASS_BALANCE_MODES = ("sampler", "loss", "none")


def to_device_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """Copy uint8 images [N, H, W] (e.g. rows of a memory map) into one tensor on `device`."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


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

    def batches(self):
        """Yield (position, local indices) for the rest of the current epoch, advancing the state."""
        order = self.epoch_order(self.state.epoch)
        while self.state.position < self.batches_per_epoch:
            start = self.state.position * self.global_batch + self.rank * self.local_batch
            indices = order[start : start + self.local_batch]
            self.state.position += 1
            yield self.state.position - 1, indices

    def next_epoch(self) -> None:
        self.state = SamplerState(epoch=self.state.epoch + 1, position=0)

    def state_dict(self) -> dict:
        return {"epoch": self.state.epoch, "position": self.state.position}

    def load_state_dict(self, state: dict) -> None:
        self.state = SamplerState(epoch=int(state["epoch"]), position=int(state["position"]))
