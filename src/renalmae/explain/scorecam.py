"""Batched Score-CAM for any classifier: one implementation, with layer helpers for the ViT and the CNN.

Score-CAM (Wang et al., 2020) weighs each channel of a target layer by how much the model still believes in
the target class when it sees only the part of the input that channel highlights. This module reproduces
the `grad-cam` library's `ScoreCAM` numerically (same upsampling, normalisations and softmax), but runs the
masked forward passes of many images and channels together in large batches on the model's device, with
no host synchronisation between batches:

1. one forward pass records the target layer's activations `A` [B, K, h, w] (ViT tokens are reshaped to the
   patch grid, prefix tokens dropped) and the logits (target = predicted class unless given);
2. each channel is upsampled to the input size (bilinear, align_corners=True, as grad-cam's
   `UpsamplingBilinear2d`), min-max normalised to a mask, and multiplied with the input;
3. the masked inputs go through the model, `B*K` of them in batches of `batch_size`; the score of a channel
   is the target-class softmax probability (`class_score="softmax"`, grad-cam's
   `ClassifierOutputSoftmaxTarget`) or logit (`"logit"`, grad-cam's `ClassifierOutputTarget`);
4. channel weights are the softmax of the scores over the channels (grad-cam's convention);
5. the map is ReLU(sum_k w_k A_k) at the layer's resolution, min-max scaled, upsampled bilinearly
   (half-pixel centres, as cv2.resize) to the input size and min-max scaled again to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from renalmae.errors import ModelError

VIT_LAYER = "blocks.-1.norm1"
"""The last transformer block's first LayerNorm: token features that still carry spatial identity."""
CNN_LAYER = "features.denseblock4"
"""The DenseNet's last feature map before its final norm + ReLU (timm `features.norm5`)."""

ClassScore = Literal["softmax", "logit"]
Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class CamLayer:
    """Where Score-CAM reads activations: a module, and how to turn its output into [B, K, h, w]."""

    module: nn.Module
    path: str
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None

    def activations(self, output: torch.Tensor) -> torch.Tensor:
        return self.reshape(output) if self.reshape is not None else output


@dataclass(frozen=True)
class CamResult:
    """Score-CAM maps [B, H, W] in [0, 1], the explained class per image and the clean-input probabilities."""

    maps: torch.Tensor
    targets: torch.Tensor
    probabilities: torch.Tensor


def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """The sub-module at a dotted path; integers index containers, negatives too (`blocks.-1.norm1`)."""
    module = model
    for part in path.split("."):
        try:
            module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
        except (AttributeError, IndexError, TypeError, KeyError):
            children = ", ".join(name for name, _ in module.named_children()) or "(none)"
            raise ModelError(
                f"layer path '{path}': no '{part}' in {type(module).__name__} (children: {children}); "
                "set explain.vit_layer / explain.cnn_layer to an existing layer"
            ) from None
        if not isinstance(module, nn.Module):
            raise ModelError(f"layer path '{path}': '{part}' is a {type(module).__name__}, not a layer")
    return module


def vit_tokens_to_grid(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """ViT tokens [B, N, C] → [B, C, h, w]: prefix (CLS / register) tokens dropped, patches on their grid."""
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    grid = tuple(getattr(getattr(model, "patch_embed", None), "grid_size", ()) or ())

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:, :]
        count = patches.shape[1]
        height, width = grid if len(grid) == 2 and grid[0] * grid[1] == count else (math.isqrt(count),) * 2
        if height * width != count:
            raise ModelError(f"cannot lay {count} ViT patch tokens on a grid; use a square input")
        return patches.reshape(patches.shape[0], height, width, patches.shape[2]).permute(0, 3, 1, 2)

    return reshape


def vit_layer(model: nn.Module, path: str = VIT_LAYER) -> CamLayer:
    """Score-CAM layer of a timm VisionTransformer (token output reshaped to the patch grid)."""
    return CamLayer(resolve_layer(model, path), path, vit_tokens_to_grid(model))


def cnn_layer(model: nn.Module, path: str = CNN_LAYER) -> CamLayer:
    """Score-CAM layer of a CNN whose module at `path` outputs [B, K, h, w]."""
    return CamLayer(resolve_layer(model, path), path, None)


def is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def default_layer(model: nn.Module, vit_path: str = VIT_LAYER, cnn_path: str = CNN_LAYER) -> CamLayer:
    """The Score-CAM layer for either model family of the project."""
    return vit_layer(model, vit_path) if is_vit(model) else cnn_layer(model, cnn_path)


def _record(model: nn.Module, layer: CamLayer, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One clean forward pass: (activations [B, K, h, w] in fp32, logits [B, classes] in fp32)."""
    captured: list[torch.Tensor] = []
    handle = layer.module.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        logits = model(images)
    finally:
        handle.remove()
    if not captured:
        raise ModelError(
            f"layer '{layer.path}' was not used by the model's forward pass; choose another layer"
        )
    activations = layer.activations(captured[0]).float()
    if activations.ndim != 4:
        raise ModelError(
            f"layer '{layer.path}' gives activations of shape {tuple(activations.shape)}; Score-CAM needs "
            "[B, K, h, w] (for a ViT layer use vit_layer(), which reshapes tokens to the patch grid)"
        )
    return activations, logits.float()


def _minmax(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """grad-cam's `scale_cam_image` scaling of each map [.., H, W]: (x - min) / (max - min + eps)."""
    flat = maps.flatten(-2)
    shifted = flat - flat.min(dim=-1, keepdim=True).values
    return (shifted / (eps + shifted.max(dim=-1, keepdim=True).values)).view_as(maps)


def _autocast(device: torch.device, precision: Precision):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int] | None = None,
    *,
    layer: CamLayer | None = None,
    batch_size: int = 64,
    class_score: ClassScore = "softmax",
    precision: Precision = "auto",
    channels_last: bool = False,
    progress: bool = False,
) -> CamResult:
    """Score-CAM maps of `images` [B, C, H, W] (float, model input) for `targets` (default: predicted class).

    `batch_size` counts masked inputs per forward pass (each image has K of them, K = the layer's channels).
    The model is put in eval mode; everything stays on the model's device.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    model.eval()
    device = next(model.parameters()).device
    layer = layer or default_layer(model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device=device, dtype=torch.float32).contiguous(memory_format=memory_format)
    count, height, width = images.shape[0], images.shape[-2], images.shape[-1]

    with torch.inference_mode(), _autocast(device, precision):
        activations, logits = _record(model, layer, images)
        probabilities = logits.softmax(dim=-1)
        if targets is None:
            targets = logits.argmax(dim=-1)
        targets = torch.as_tensor(targets, device=device, dtype=torch.long).reshape(count)
        channels = activations.shape[1]
        total = count * channels
        scores = torch.empty(total, device=device, dtype=torch.float32)
        starts = range(0, total, batch_size)
        for start in tqdm(starts, desc="Score-CAM", unit="batch", disable=not progress, leave=False):
            pair = torch.arange(start, min(start + batch_size, total), device=device)
            image_index, channel_index = pair // channels, pair % channels
            masks = F.interpolate(
                activations[image_index, channel_index][:, None],
                size=(height, width),
                mode="bilinear",
                align_corners=True,
            )
            masks = _minmax(masks, eps=1e-8)
            masked = (images[image_index] * masks).contiguous(memory_format=memory_format)
            output = model(masked).float()
            if class_score == "softmax":
                output = output.softmax(dim=-1)
            scores[start : start + pair.numel()] = output.gather(1, targets[image_index][:, None])[:, 0]
        weights = scores.view(count, channels).softmax(dim=-1)
        cams = torch.einsum("bk,bkhw->bhw", weights, activations).clamp_min(0)
        cams = _minmax(cams, eps=1e-7)
        cams = F.interpolate(cams[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        cams = _minmax(cams.clamp_min(0), eps=1e-7)
    return CamResult(maps=cams.float(), targets=targets, probabilities=probabilities)


def score_cam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int] | None = None,
    **options,
) -> torch.Tensor:
    """Score-CAM maps [B, H, W] in [0, 1] of `images` [B, C, H, W]; see `explain` for the options."""
    return explain(model, images, targets, **options).maps
