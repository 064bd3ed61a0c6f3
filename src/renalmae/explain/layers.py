"""Where Score-CAM reads activations: a layer of the ViT or the CNN, laid out as channels on a spatial grid.

A `CamLayer` names one module per network (several for a fold ensemble, see `renalmae.explain.ensemble`)
and turns each module's output into activations `[B, K, h, w]`:

- a CNN layer's output already is `[B, K, h, w]`;
- a ViT layer outputs tokens `[B, N, C]`. Which of them are patches is read from the model and the
  output, never assumed: the patch grid `h × w` follows from the input size and the patch size, and the
  `N − h·w` remaining tokens must be the model's prefix tokens (class, register, distillation:
  timm's `num_prefix_tokens`, always first) or none (a layer before they are joined, e.g.
  `patch_embed`). Any other count, or a pooled `[B, C]` output, is refused naming the layer.

Geometry: cell `i` of an `h`-cell grid over `H` pixels belongs at pixel `(i + ½)·H/h − ½`, the centre
of its patch (a ViT token) or of its stride-`H/h` cell (a CNN feature; DenseNet's padding puts the
receptive-field centres up to 1.5 px from there at stride 32). Bilinear upsampling with
`align_corners=False` keeps that geometry and is the default for both model families; the `grad-cam`
library upsamples masks with `align_corners=True`, which moves every cell toward the image border, by
up to half a cell at the border (`align_corners=True` reproduces it for comparisons).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from renalmae.errors import ModelError

VIT_LAYER = "blocks.-1.norm1"
"""The last transformer block's first LayerNorm: token features that still carry spatial identity."""
CNN_LAYER = "features.denseblock4"
"""The DenseNet's last feature map before its final norm + ReLU (timm `features.norm5`)."""
MIN_GRID = 7
"""Below this many cells a side a map cannot localise much (DenseNet-169's last block is 2 × 2 at 64 px)."""

log = logging.getLogger(__name__)

ToGrid = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
"""One module's output and the input's (H, W) → activations [B, K, h, w]."""


@dataclass(frozen=True)
class CamLayer:
    """Score-CAM's target layer: its module(s), how outputs become [B, K, h, w], and its geometry."""

    modules: tuple[nn.Module, ...]
    path: str
    to_grid: ToGrid
    align_corners: bool = False

    def activations(self, outputs: list[torch.Tensor], input_size: tuple[int, int]) -> torch.Tensor:
        """The channels of every module, concatenated: [B, K_total, h, w] in fp32."""
        grids = [self.to_grid(output, input_size).float() for output in outputs]
        if len({grid.shape[2:] for grid in grids}) > 1:
            raise ModelError(f"layer '{self.path}' has different grids in the ensemble's models")
        return torch.cat(grids, dim=1)

    def upsample(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bilinear upsampling of [N, 1, h, w] to `size` in this layer's geometry."""
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=self.align_corners)


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


def is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def patch_grid(model: nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """The ViT's patch grid (h, w) for an input of `input_size` (H, W) pixels."""
    patch = tuple(model.patch_embed.patch_size)
    return input_size[0] // patch[0], input_size[1] // patch[1]


def vit_tokens_to_grid(model: nn.Module, path: str = VIT_LAYER, unit_tokens: bool = False) -> ToGrid:
    """ViT layer output → [B, C, h, w]: tokens [B, N, C] (prefix tokens dropped) or NHWC / NCHW grids.

    `unit_tokens`: each patch token's channel vector is divided by its L2 norm, so a high-norm token
    (Darcet et al. 2024: background patches that store global information) weighs no more than another;
    what is left is each token's direction. A LayerNorm output (`blocks.i.norm1`) has nearly equal token
    norms already; the residual stream (`blocks.i`) does not."""
    prefix = int(getattr(model, "num_prefix_tokens", 0))

    def to_grid(output: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        height, width = patch_grid(model, input_size)
        shape = tuple(output.shape)
        if output.ndim == 4 and shape[1:3] == (height, width):
            return output.permute(0, 3, 1, 2)
        if output.ndim == 4 and shape[2:] == (height, width):
            return output
        if output.ndim != 3:
            raise ModelError(
                f"layer '{path}' outputs shape {shape}, not tokens [B, N, C] or a {height} × {width} grid; "
                f"choose a layer inside the transformer blocks (e.g. {VIT_LAYER})"
            )
        extra = shape[1] - height * width
        if extra not in (0, prefix):
            raise ModelError(
                f"layer '{path}' outputs {shape[1]} tokens; the model has {height} × {width} patches and "
                f"{prefix} prefix tokens, so which tokens are patches is unknown; choose a layer whose "
                f"output holds the patch tokens (e.g. {VIT_LAYER})"
            )
        patches = output[:, extra:, :]
        if unit_tokens:
            patches = patches / patches.float().norm(dim=-1, keepdim=True).clamp_min(1e-6).to(patches.dtype)
        return patches.reshape(shape[0], height, width, shape[2]).permute(0, 3, 1, 2)

    return to_grid


def cnn_to_grid(path: str) -> ToGrid:
    def to_grid(output: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        if output.ndim != 4:
            raise ModelError(
                f"layer '{path}' gives activations of shape {tuple(output.shape)}; Score-CAM needs a "
                "convolutional feature map [B, K, h, w] (for a ViT layer use vit_layer())"
            )
        return output

    return to_grid


def vit_layer(
    model: nn.Module, path: str = VIT_LAYER, align_corners: bool = False, unit_tokens: bool = False
) -> CamLayer:
    """Score-CAM layer of a timm VisionTransformer (tokens laid on the patch grid; see `vit_tokens_to_grid`
    for `unit_tokens`)."""
    name = f"{path} (unit tokens)" if unit_tokens else path
    to_grid = vit_tokens_to_grid(model, path, unit_tokens)
    return CamLayer((resolve_layer(model, path),), name, to_grid, align_corners)


def cnn_layer(model: nn.Module, path: str = CNN_LAYER, align_corners: bool = False) -> CamLayer:
    """Score-CAM layer of a CNN whose module at `path` outputs [B, K, h, w]."""
    return CamLayer((resolve_layer(model, path),), path, cnn_to_grid(path), align_corners)


def default_layer(model: nn.Module, vit_path: str = VIT_LAYER, cnn_path: str = CNN_LAYER) -> CamLayer:
    """The Score-CAM layer for either model family of the project."""
    return vit_layer(model, vit_path) if is_vit(model) else cnn_layer(model, cnn_path)


def check_grid(grid: tuple[int, int], path: str, min_grid: int = MIN_GRID) -> str | None:
    """A warning (also logged) when the layer's grid is coarser than `min_grid` cells a side, else None."""
    if min(grid) >= min_grid:
        return None
    message = (
        f"layer '{path}' gives a {grid[0]} × {grid[1]} grid, below {min_grid} × {min_grid}: its maps are "
        "a few blobs that cannot localise; choose an earlier layer or a larger image size"
    )
    log.warning(message)
    return message
