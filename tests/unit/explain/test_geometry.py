"""Known-answer geometry: a model whose evidence is one known patch gets a map that peaks on that patch.

Two synthetic models are built so that only the patch at a chosen position drives the target logit
(`gain · GELU(mean brightness of that patch)`, the other class's logit is 0):

- a timm VisionTransformer (LayerNorms replaced by identities, attention switched off) whose token `q`
  carries the patch brightness and a one-hot code of its position `q`; one MLP unit passes the chosen
  token's brightness and the pooled head reads it;
- a CNN: a stride-`patch` convolution (patch brightness) followed by fixed one-hot spatial channels, the
  head reading the chosen cell's channel.

For every position, borders and corners included, under both weightings, the map's maximum must lie on
that patch and be reached on one of its 2 × 2 centre pixels (the pixels nearest the patch centre). The
mask geometry is held directly too: each token's / cell's mask (what Score-CAM reveals for that channel)
is brightest on its own patch centre, which grad-cam's `align_corners=True` upsampling misses by up to
half a patch at the border.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from renalmae.explain.layers import cnn_layer, vit_layer
from renalmae.explain.scorecam import explain, minmax

SIZE, PATCH = 48, 8
CELLS = SIZE // PATCH  # a 6 × 6 grid: 20 of its 36 positions lie on the border
GAIN, GATE = 6.0, 50.0


def evidence_vit(position: int) -> nn.Module:
    tokens = CELLS * CELLS
    width = tokens + 2  # brightness, one position code per token, the evidence channel
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, in_chans=1, num_classes=2, img_size=SIZE, patch_size=PATCH,
        embed_dim=width, depth=1, num_heads=1, mlp_ratio=1.0, global_pool="avg", norm_layer=nn.Identity,
    )  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.patch_embed.proj.weight[0] = 1.0 / PATCH**2  # channel 0: the patch's mean brightness
        for token in range(tokens):
            model.pos_embed[0, 1 + token, 1 + token] = 1.0  # channel 1 + q: "I am token q"
        model.blocks[0].mlp.fc2.weight[width - 1, 0] = 1.0  # the gated unit → the evidence channel
        model.head.weight[1, width - 1] = GAIN * tokens  # undo the average over tokens
    return point_vit_at(model.eval(), position)


def point_vit_at(model: nn.Module, position: int) -> nn.Module:
    """Gate the MLP unit so that only token `position` passes its brightness (GELU) to the evidence."""
    fc1 = model.blocks[0].mlp.fc1
    with torch.no_grad():
        fc1.weight.zero_()
        fc1.weight[0, 0], fc1.weight[0, 1 + position], fc1.bias[0] = 1.0, GATE, -GATE
    return model


class OneHotCells(nn.Module):
    """[B, 1, n, n] brightness → [B, 1 + n², n, n]: the brightness, then the brightness of each cell alone."""

    def forward(self, brightness: torch.Tensor) -> torch.Tensor:
        codes = torch.eye(CELLS * CELLS, dtype=brightness.dtype).view(-1, CELLS, CELLS)
        return torch.cat([brightness, brightness * codes[None]], dim=1)


class EvidenceCNN(nn.Module):
    def __init__(self, position: int):
        super().__init__()
        self.position = position
        convolution = nn.Conv2d(1, 1, PATCH, stride=PATCH, bias=False)
        nn.init.constant_(convolution.weight, 1.0 / PATCH**2)
        self.features = nn.Sequential(convolution, OneHotCells())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        evidence = self.features(images)[:, 1 + self.position].sum(dim=(-2, -1))
        return torch.stack([torch.zeros_like(evidence), GAIN * nn.functional.gelu(evidence)], dim=-1)


def point_cnn_at(model: EvidenceCNN, position: int) -> EvidenceCNN:
    model.position = position
    return model


MODELS = {
    "vit": (evidence_vit, point_vit_at, lambda model: vit_layer(model, "blocks.0.norm1")),
    "cnn": (EvidenceCNN, point_cnn_at, lambda model: cnn_layer(model, "features")),
}


def speckled_image() -> torch.Tensor:
    """A bright image with speckle (model input), so every patch has evidence to reveal."""
    return 1.0 + 0.3 * torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def patch_box(position: int) -> tuple[slice, slice]:
    row, column = divmod(position, CELLS)
    return slice(row * PATCH, (row + 1) * PATCH), slice(column * PATCH, (column + 1) * PATCH)


@pytest.mark.parametrize("weighting", ["score", "softmax"])
@pytest.mark.parametrize("family", sorted(MODELS))
def test_the_map_peaks_on_the_evidence_patch_at_every_position(family, weighting):
    build, point_at, layer_of = MODELS[family]
    image, model = speckled_image(), build(0)
    misplaced = []
    for position in range(CELLS * CELLS):
        point_at(model, position)
        cam = explain(model, image, [1], layer=layer_of(model), weighting=weighting).maps[0].numpy()
        peak = cam >= cam.max() - 1e-6
        rows, columns = patch_box(position)
        inside = np.zeros_like(peak)
        inside[rows, columns] = True
        centre = (rows.start + PATCH // 2 - 1, columns.start + PATCH // 2 - 1)
        if peak[~inside].any() or not peak[centre[0] : centre[0] + 2, centre[1] : centre[1] + 2].any():
            misplaced.append(position)
    assert misplaced == [], f"{family}/{weighting}: peak off the evidence patch at positions {misplaced}"


@pytest.mark.parametrize("family", sorted(MODELS))
def test_each_channel_mask_is_brightest_on_its_own_patch_centre(family):
    build, _, layer_of = MODELS[family]
    model = build(0)
    layer = layer_of(model)
    codes = torch.eye(CELLS * CELLS).view(-1, 1, CELLS, CELLS)  # one channel per token / cell
    masks = minmax(layer.upsample(codes, (SIZE, SIZE)), eps=1e-8)[:, 0]
    for position in range(CELLS * CELLS):
        rows, columns = patch_box(position)
        centre = masks[position, rows.start + 3 : rows.start + 5, columns.start + 3 : columns.start + 5]
        assert float(centre.min()) >= 1 - 1 / PATCH, position  # ≥ 7/8 on the 2 × 2 centre pixels


def test_gradcam_corner_geometry_misses_the_border_patch_centres():
    model = evidence_vit(0)
    corners = vit_layer(model, "blocks.0.norm1", align_corners=True)
    codes = torch.eye(CELLS * CELLS).view(-1, 1, CELLS, CELLS)
    masks = minmax(corners.upsample(codes, (SIZE, SIZE)), eps=1e-8)[:, 0]
    assert float(masks[0, 3:5, 3:5].min()) < 0.75  # token (0, 0)'s mask peaks on pixel (0, 0), not (3.5, 3.5)
