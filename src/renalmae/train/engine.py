"""The one training loop (`fit`) shared by MAE pretraining, ViT fine-tuning and the CNN baseline.

Device-agnostic: images live on the device as uint8, or stream there from the memory-mapped cache when
they exceed `train.device_cache_bytes` (`renalmae.train.data`), and are augmented there; AdamW with a per-step
warmup + cosine schedule; bf16 autocast on CUDA; optional `torch.compile`; gradient accumulation and
clipping; DDP under `torchrun`; early stopping that keeps the best epoch's weights; a checkpoint every
`train.checkpoint_every_steps` optimizer steps from which a killed run resumes to exactly the same
weights. The step itself never waits on the host: losses are read back only at logging intervals.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from renalmae.models.preprocess import GREY_MEAN, GREY_STD, to_model_input
from renalmae.params import AugmentParams, TrainParams
from renalmae.train import checkpoint as ckpt
from renalmae.train.augment import augment_batch
from renalmae.train.data import BatchSampler, CachedImages, batch_source
from renalmae.train.distributed import DistContext, mean_across_ranks, setup, wrap
from renalmae.train.schedule import build_optimizer, build_scheduler, param_groups

log = logging.getLogger(__name__)

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
MetricsHook = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class FitConfig:
    """What one training run needs beyond the shared `train` / `augment` params sections."""

    epochs: int
    batch_size: int
    lr: float
    """Peak learning rate (already scaled by batch size where the method says so)."""
    warmup_epochs: float
    weight_decay: float
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float | None = None
    seed: int = 0
    class_balance: str = "none"
    early_stopping_patience: int = 0
    """Stop after this many epochs without a better `monitor` value; 0 = never stop early."""
    monitor: str | None = None
    """Key of the `validate` result to maximise; its best epoch's weights are kept."""
    layer_decay: float = 1.0
    channels_last: bool = False
    augment: bool = True


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    """One row per epoch: epoch, step, train_loss, lr and the validation metrics."""
    step_losses: list[tuple[int, int, float]] = field(default_factory=list)
    """(epoch, step, loss) for every optimizer step."""
    best_epoch: int | None = None
    best_value: float | None = None
    resumed_from_step: int | None = None
    stopped_early: bool = False
    streamed: bool = False
    """True when the images streamed from the cache instead of living on the device."""


def classification_objective(
    class_weights: np.ndarray | None = None, label_smoothing: float = 0.0
) -> Objective:
    """Cross-entropy (optionally class-weighted and label-smoothed) on the model's logits."""
    cached: dict[torch.device, torch.Tensor] = {}

    def objective(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        weight = None
        if class_weights is not None:
            if inputs.device not in cached:
                cached[inputs.device] = torch.as_tensor(
                    class_weights, dtype=torch.float32, device=inputs.device
                )
            weight = cached[inputs.device]
        logits = model(inputs)
        return F.cross_entropy(logits.float(), targets, weight=weight, label_smoothing=label_smoothing)

    return objective


def mae_objective(mask_ratio: float, num_patches: int, context: DistContext | None = None) -> Objective:
    """The MAE reconstruction loss the model itself returns, for images of `num_patches` patches.

    Under data parallelism (`context`) the masking noise is drawn for the whole global batch and sliced
    to this rank's share, as the augmentation is, so the ranks mask their images exactly as one process
    would (every rank's batch has the same size: the sampler drops incomplete batches).
    """
    rank, world_size = (context.rank, context.world_size) if context is not None else (0, 1)

    def objective(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        local = len(inputs)
        share = slice(rank * local, (rank + 1) * local)
        noise = torch.rand(local * world_size, num_patches, device=inputs.device)[share]
        loss, _, _ = model(inputs, mask_ratio=mask_ratio, noise=noise)
        return loss.float()

    return objective


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's RNGs: call before building a model so its initial weights repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def use_bf16(train: TrainParams, device: torch.device) -> bool:
    return train.precision == "bf16" or (train.precision == "auto" and device.type == "cuda")


def model_input(images_uint8: torch.Tensor, augment: AugmentParams | None, generator, draw=(None, 0)):
    """Normalised float input; augmented on the device when `augment` is given."""
    if augment is None:
        return to_model_input(images_uint8)
    pixels = augment_batch(images_uint8, augment, generator, draw_size=draw[0], draw_offset=draw[1])
    return (pixels - GREY_MEAN) / GREY_STD


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}


def fit(
    model: nn.Module,
    images: np.ndarray | torch.Tensor | CachedImages,
    targets: np.ndarray | None,
    objective: Objective,
    config: FitConfig,
    train: TrainParams,
    augment: AugmentParams,
    *,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    on_metrics: MetricsHook | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    context: DistContext | None = None,
) -> FitResult:
    """Train `model` in place on uint8 `images` [N, H, W] (with integer `targets`, or None for MAE).

    `images` may be `CachedImages` (rows of the memory-mapped cache): then nothing is read before the
    loop decides whether they live on the device or stream from the cache (`train.device_cache_bytes`).

    Resumes from `checkpoint_dir` when it holds a checkpoint with the same `fingerprint`, and deletes
    it after success. On return the model holds the best epoch's weights (`config.monitor`) or the last.
    """
    context = context or setup(train.device, train.cpu_threads)
    device = context.device
    seed_everything(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    augment_generator = torch.Generator(device=device).manual_seed(config.seed + 7919)

    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(
        param_groups(model, config.weight_decay, config.layer_decay), config.lr, config.betas, device
    )
    sampler = BatchSampler(
        len(images),
        config.batch_size,
        config.seed,
        targets,
        config.class_balance,
        context.rank,
        context.world_size,
    )
    accum = train.grad_accum_steps
    steps_per_epoch = math.ceil(sampler.batches_per_epoch / accum)
    total_steps = steps_per_epoch * config.epochs
    scheduler = build_scheduler(optimizer, round(config.warmup_epochs * steps_per_epoch), total_steps)

    result = FitResult()
    step = 0
    best_state: dict[str, torch.Tensor] | None = None
    epochs_without_gain = 0
    epoch_losses: list[float] = []
    state = ckpt.load_checkpoint(checkpoint_dir, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        ckpt.restore_rng(state["rng"], augment_generator)
        step = result.resumed_from_step = state["step"]
        result.history, result.step_losses = state["history"], state["step_losses"]
        result.best_epoch, result.best_value = state["best_epoch"], state["best_value"]
        best_state, epochs_without_gain = state["best_state"], state["epochs_without_gain"]
        epoch_losses = state["epoch_losses"]

    source = batch_source(images, device, train.device_cache_bytes)
    result.streamed = source.streamed
    device_targets = (
        None if targets is None else torch.as_tensor(np.array(targets), dtype=torch.long).to(device)
    )
    forward_model = wrap(model, context)
    if train.compile:
        forward_model = torch.compile(forward_model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(train, device))
    progress = tqdm(
        total=total_steps,
        initial=step,
        disable=not (train.progress and context.is_main),
        desc="train",
        unit="step",
    )

    def save(epoch_loss_values: list[float]) -> None:
        if not (context.is_main and checkpoint_dir is not None):
            return
        ckpt.save_checkpoint(
            checkpoint_dir,
            {
                "fingerprint": fingerprint, "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "sampler": sampler.state_dict(), "rng": ckpt.rng_state(augment_generator),
                "history": result.history, "step_losses": result.step_losses,
                "best_epoch": result.best_epoch, "best_value": result.best_value, "best_state": best_state,
                "epochs_without_gain": epochs_without_gain, "epoch_losses": epoch_loss_values,
            },
        )  # fmt: skip

    stop = False
    while sampler.state.epoch < config.epochs and not stop:
        epoch = sampler.state.epoch
        model.train()
        pending: list[torch.Tensor] = []
        micro_losses: list[torch.Tensor] = []
        last_position = sampler.batches_per_epoch - 1
        for position, indices, batch_images in source.batches(sampler):
            group_start = (position // accum) * accum
            group_size = min(accum, sampler.batches_per_epoch - group_start)
            boundary = position == last_position or (position + 1) % accum == 0
            draw = (sampler.global_batch, context.rank * sampler.local_batch)
            inputs = model_input(batch_images, augment if config.augment else None, augment_generator, draw)
            if config.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            batch_targets = None if device_targets is None else device_targets[indices]
            sync = contextlib.nullcontext() if boundary or not context.enabled else forward_model.no_sync()
            with sync, autocast:
                loss = objective(forward_model, inputs, batch_targets)
            with sync:
                (loss / group_size).backward()
            micro_losses.append(loss.detach())
            if not boundary:
                continue
            if config.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            pending.append(torch.stack(micro_losses).mean())
            micro_losses = []
            step += 1
            progress.update(1)
            if step % train.log_every_steps == 0 or step % train.checkpoint_every_steps == 0:
                values = mean_across_ranks(torch.stack(pending), context).tolist()
                epoch_losses.extend(values)
                result.step_losses.extend(
                    (epoch, step - len(values) + offset + 1, value) for offset, value in enumerate(values)
                )
                pending = []
                progress.set_postfix(loss=f"{values[-1]:.4f}")
                if on_metrics is not None and context.is_main and step % train.log_every_steps == 0:
                    on_metrics(
                        {
                            "train_loss": values[-1],
                            "lr": max(group["lr"] for group in optimizer.param_groups),
                        },
                        step,
                    )
                if step % train.checkpoint_every_steps == 0:
                    save(epoch_losses)
        if pending:
            values = mean_across_ranks(torch.stack(pending), context).tolist()
            epoch_losses.extend(values)
            result.step_losses.extend(
                (epoch, step - len(values) + offset + 1, value) for offset, value in enumerate(values)
            )
        train_loss = float(np.mean(epoch_losses)) if epoch_losses else math.nan
        peak_lr = max(group["lr"] for group in optimizer.param_groups)
        row = {"epoch": epoch, "step": step, "train_loss": train_loss, "lr": peak_lr}
        epoch_losses = []
        if validate is not None:
            model.eval()
            row.update(validate(model))
        result.history.append(row)
        if config.monitor is not None:
            value = row[config.monitor]
            if math.isnan(value):
                value = -math.inf  # an undefined score (e.g. one class in validation) never wins
            if result.best_value is None or value > result.best_value:
                result.best_epoch, result.best_value = epoch, float(value)
                best_state, epochs_without_gain = _snapshot(model), 0
            else:
                epochs_without_gain += 1
                stop = 0 < config.early_stopping_patience <= epochs_without_gain
                result.stopped_early = stop
        if on_metrics is not None and context.is_main:
            on_metrics({f"epoch_{key}": value for key, value in row.items() if key != "step"}, step)
        sampler.next_epoch()
    progress.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if context.is_main:
        ckpt.remove_checkpoints(checkpoint_dir)
    return result
