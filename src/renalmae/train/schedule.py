"""Optimiser set-up: AdamW parameter groups (no decay on norms, biases and embeddings; layer-wise lr decay)
and the per-step linear-warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "dist_token", "decoder_pos_embed")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step `step`: linear warmup, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _no_decay(name: str, parameter: nn.Parameter) -> bool:
    return parameter.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES or name.endswith(".bias")


def _vit_layer_id(name: str, num_layers: int) -> int:
    """MAE's `get_layer_id_for_vit`: embeddings are layer 0, block i is i + 1, the head is last."""
    if name.split(".")[0] in ("cls_token", "pos_embed", "patch_embed", "dist_token", "reg_token"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups; with `layer_decay` < 1 (a timm ViT) block i's lr is scaled by decay^(depth + 1 - i)."""
    num_layers = len(model.blocks) + 1 if layer_decay < 1.0 else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = _vit_layer_id(name, num_layers) if layer_decay < 1.0 else 0
        decay = not _no_decay(name, parameter)
        group = groups.setdefault(
            (layer, decay),
            {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (num_layers - layer) if layer_decay < 1.0 else 1.0,
            },
        )
        group["params"].append(parameter)
    return list(groups.values())


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
