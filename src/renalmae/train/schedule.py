"""Optimiser set-up: AdamW parameter groups (timm's helpers, as MAE uses them: weight decay, layer-wise lr
decay) and the per-step linear-warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step `step`: linear warmup, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: no weight decay on 1-D tensors (norms, biases) and on the names the model lists in
    `no_weight_decay()` (timm ViT: `pos_embed`, `cls_token`); everything else `weight_decay`.

    This is MAE's set-up: pretraining calls timm `param_groups_weight_decay(model, wd)` (the MAE wrapper
    lists no names, so its `cls_token` and `mask_token` are decayed), fine-tuning MAE's `param_groups_lrd`,
    which timm `param_groups_layer_decay` reproduces: with `layer_decay` < 1 the patch embedding, class
    token and positions get lr scale decay^(depth + 1), block i decay^(depth - i), the final norm and the
    head 1 (the model needs timm's `group_matcher`, as every timm ViT has).
    """
    skip = tuple(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else ()
    if layer_decay < 1.0:
        return param_groups_layer_decay(
            model, weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay
        )
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)


def build_optimizer(
    groups: list[dict], lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.AdamW:
    """AdamW (fused kernels on CUDA) with each group's lr = `lr` × its `lr_scale`."""
    for group in groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=device.type == "cuda")


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps)
    )
