"""A ViT's token norms by layer and position, and which Score-CAM layer agrees best with its occlusion.

Vision transformers turn some low-information background patches into stores of global information whose
residual-stream norm is far above the rest (Darcet et al., 2024, "Vision Transformers Need Registers",
ICLR, Section 2: "high-norm tokens", outliers above ~2× the typical norm in their Fig. 3, appearing after
the first layers). Maps built from activations light up at those tokens whatever the class. Whether
Score-CAM's edge peaks are such artefacts is measured here, on images that choose nothing:

- `token_norms`: per layer (each block's residual output `blocks.i` and its normalised input
  `blocks.i.norm1`), the mean L2 norm of each patch token by grid position, the edge cells' mean over the
  interior's, and the outliers: tokens above `OUTLIER_FACTOR` × their image's median token norm at that
  layer, with the share of them on the edge cells (against the edge's share of all cells);
- `layer_agreement`: for candidate Score-CAM layers, the per-image rank agreement of the maps with the
  model's occlusion map (`renalmae.explain.occlusion`); `choose_layer` takes the best mean. Run on a
  validation fold, it chooses the layer (`explain.vit_layer`, `explain.vit_tokens`) without looking at
  the images that report it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from renalmae.explain.layers import patch_grid, vit_layer
from renalmae.explain.occlusion import occlusion_maps, rank_agreement
from renalmae.explain.scorecam import Precision, Weighting, explain
from renalmae.explain.summary import mean_interval

OUTLIER_FACTOR = 2.0
"""A token whose norm exceeds this multiple of its image's median token norm (same layer) is an outlier."""


@dataclass(frozen=True)
class LayerNorms:
    """Token norms of one layer over a set of images."""

    layer: str
    mean_norm: np.ndarray  # [h, w] mean L2 norm of the patch token at each position
    edge_over_interior: float  # mean norm on the grid's edge cells / on its interior cells
    outlier_share: float  # share of all patch tokens that are outliers
    outlier_edge_share: float  # share of the outliers that sit on edge cells (NaN without outliers)
    edge_cell_share: float  # share of the grid's cells on its edge (the value without any edge bias)


def edge_cells(grid: tuple[int, int]) -> np.ndarray:
    """Bool [h, w]: the cells on the grid's outer ring."""
    edge = np.ones(grid, dtype=bool)
    edge[1:-1, 1:-1] = False
    return edge


def norm_layers(model: nn.Module) -> list[str]:
    """Every block's residual output and normalised input, in depth order."""
    return [
        path for index in range(len(model.blocks)) for path in (f"blocks.{index}.norm1", f"blocks.{index}")
    ]


@torch.inference_mode()
def token_norms(model: nn.Module, inputs: torch.Tensor, layers: list[str] | None = None) -> list[LayerNorms]:
    """Token norms of `model` (a timm ViT) on `inputs` [B, C, H, W] (model input) at `layers` (default
    `norm_layers`); prefix tokens (class, registers) are left out."""
    model.eval()
    layers = layers or norm_layers(model)
    device = next(model.parameters()).device
    grid = patch_grid(model, tuple(inputs.shape[-2:]))
    cam_layers = [vit_layer(model, path) for path in layers]
    captured: list[list[torch.Tensor]] = [[] for _ in layers]
    handles = [
        layer.modules[0].register_forward_hook(lambda _m, _i, output, store=store: store.append(output))
        for layer, store in zip(cam_layers, captured, strict=True)
    ]
    try:
        model(inputs.to(device=device, dtype=torch.float32))
    finally:
        for handle in handles:
            handle.remove()
    edge = edge_cells(grid)
    result = []
    for layer, store in zip(cam_layers, captured, strict=True):
        tokens = layer.activations([store[0]], tuple(inputs.shape[-2:]))  # [B, C, h, w]
        norms = tokens.norm(dim=1).cpu().numpy()  # [B, h, w]
        outliers = norms > OUTLIER_FACTOR * np.median(norms.reshape(len(norms), -1), axis=1)[:, None, None]
        mean = norms.mean(axis=0)
        result.append(LayerNorms(
            layer=layer.path, mean_norm=mean,
            edge_over_interior=float(mean[edge].mean() / mean[~edge].mean()),
            outlier_share=float(outliers.mean()),
            outlier_edge_share=float(outliers[:, edge].sum() / outliers.sum()) if outliers.any() else np.nan,
            edge_cell_share=float(edge.mean()),
        ))  # fmt: skip
    return result


def candidate_layers(model: nn.Module) -> list[tuple[str, bool]]:
    """Score-CAM layers worth choosing between, as (path, unit_tokens): every block's normalised input, its
    residual output as given, and that output with unit-norm tokens."""
    return [
        candidate
        for index in range(len(model.blocks))
        for candidate in (
            (f"blocks.{index}.norm1", False),
            (f"blocks.{index}", False),
            (f"blocks.{index}", True),
        )
    ]


def layer_agreement(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    candidates: list[tuple[str, bool]],
    weighting: Weighting = "score",
    batch_size: int = 64,
    precision: Precision = "auto",
) -> dict[str, np.ndarray]:
    """Per candidate ViT layer (path, unit_tokens), named as its `CamLayer`, the rank agreement [B] of its
    Score-CAM maps (all channels) of the classes `targets` with the model's occlusion map on the patch
    grid, for `inputs` [B, C, H, W]. The occlusion map is computed once and shared."""
    grid = patch_grid(model, tuple(inputs.shape[-2:]))
    occlusion = occlusion_maps(model, inputs, targets, grid, batch_size, precision)
    agreement = {}
    for path, unit_tokens in candidates:
        layer = vit_layer(model, path, unit_tokens=unit_tokens)
        maps = explain(model, inputs, targets, weighting=weighting, layer=layer, batch_size=batch_size,
                       precision=precision).maps  # fmt: skip
        agreement[layer.path] = rank_agreement(maps, occlusion)
    return agreement


@dataclass(frozen=True)
class LayerChoice:
    """The candidate layer whose maps agree best with occlusion on the images given, and every candidate's
    agreement (`mean_interval` entries: mean, cluster-bootstrap interval, n, groups)."""

    chosen: str
    agreement: dict[str, dict]


def choose_layer(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    groups: np.ndarray | list[str],
    candidates: list[tuple[str, bool]] | None = None,
    weighting: Weighting = "score",
    batch_size: int = 64,
    precision: Precision = "auto",
    resamples: int = 1000,
) -> LayerChoice:
    """The ViT layer (default: `candidate_layers`) with the highest mean rank agreement with occlusion on
    `inputs` [B, C, H, W] of the classes `targets` [B], images grouped by `groups` [B] for the intervals.
    Give it validation images only: the images it chooses on must not be the ones that report."""
    agreement = layer_agreement(
        model, inputs, targets, candidates or candidate_layers(model), weighting, batch_size, precision
    )
    summary = {name: mean_interval(values, groups, 0.95, resamples, 0) for name, values in agreement.items()}
    scored = [name for name in summary if summary[name]["mean"] is not None]
    chosen = max(scored, key=lambda name: summary[name]["mean"]) if scored else next(iter(summary))
    return LayerChoice(chosen, summary)
