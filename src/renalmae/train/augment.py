"""Batched ultrasound augmentation on the device: uint8 images in, normalised float model input out.

One affine warp per batch (random resized crop, horizontal flip and a small rotation folded into one
matrix per image, applied by a single `affine_grid` / `grid_sample` call), then per-image gamma and
contrast and multiplicative speckle noise. Every random number comes from one `torch.Generator` on the
images' device, so a batch is reproducible from the generator state and nothing waits on the host.
The evaluation transform is the identity: images are already at the working size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from renalmae.params import AugmentParams

ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)


def _uniform(draws: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * draws


def augment_batch(
    images: torch.Tensor,
    params: AugmentParams,
    generator: torch.Generator,
    draw_size: int | None = None,
    draw_offset: int = 0,
) -> torch.Tensor:
    """Augment uint8 images [B, H, W] (or [B, 1, H, W]) into float [B, 1, H, W] in [0, 1].

    `draw_size` / `draw_offset`: under data parallelism every rank draws the random numbers of the
    whole global batch and keeps its own slice, so a sharded batch is augmented exactly as the same
    images would be in one process.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    batch = images.shape[0]
    total = draw_size or batch
    device = images.device
    pixels = images.float() / 255.0
    draws = torch.rand(total, 8, generator=generator, device=device)[draw_offset : draw_offset + batch]
    noise = torch.randn(total, *pixels.shape[1:], generator=generator, device=device)
    noise = noise[draw_offset : draw_offset + batch]

    area = _uniform(draws[:, 0], *params.crop_scale)
    log_ratio = _uniform(draws[:, 1], math.log(ASPECT_RATIO_RANGE[0]), math.log(ASPECT_RATIO_RANGE[1]))
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (draws[:, 2] * 2 - 1) * (1 - width)
    centre_y = (draws[:, 3] * 2 - 1) * (1 - height)
    flip = torch.where(draws[:, 4] < params.hflip, -1.0, 1.0)
    angle = _uniform(draws[:, 5], -params.rotation_degrees, params.rotation_degrees) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([width * cos * flip, -height * sin, centre_x], dim=1),
            torch.stack([width * sin * flip, height * cos, centre_y], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    warped = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    gamma = torch.exp(_uniform(draws[:, 6], math.log(params.gamma[0]), math.log(params.gamma[1])))
    contrast = _uniform(draws[:, 7], *params.contrast)
    warped = warped.clamp(0, 1).pow(gamma.view(-1, 1, 1, 1))
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    warped = (warped - mean) * contrast.view(-1, 1, 1, 1) + mean
    warped = warped * (1 + params.speckle_std * noise)
    return warped.clamp(0, 1)
