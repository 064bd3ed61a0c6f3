"""Batched ultrasound augmentation on the device: uint8 images in, float images out; and the fine-tuning
recipe's batch regularisers (random erasing, mixup / CutMix) on the normalised batch.

`augment_batch` applies USF-MAE's pretraining augmentation in its order (Megahed et al. 2025, code
github.com/Yusufii9/USF-MAE `US_data_loading.py`: `RandomRotation((0, 90))`, horizontal and vertical
flips, `RandomResizedCrop(224, scale=(0.5, 2.0))`), folded into one affine warp per image and applied by a
single `affine_grid` / `grid_sample` call, then per-image gamma, contrast and multiplicative speckle. The
crop follows torchvision's `RandomResizedCrop.get_params`: up to 10 draws of (area, aspect ratio), the first
that fits inside the image wins, else the whole image. Every random number comes from one
`torch.Generator` on the images' device, so a batch is reproducible from the generator state and nothing
waits on the host. The evaluation transform is the identity: images are already at the working size.

`batch_erasing` and `batch_mixup` are the MAE fine-tuning recipe's regularisers (He et al. 2022,
`main_finetune.py`: `--reprob 0.25 --mixup 0.8 --cutmix 1.0`): timm's `RandomErasing` and `Mixup`, applied
by the classifier objective to the normalised batch on its device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing

from renalmae.params import AugmentParams, ClassifierTrainingParams

ASPECT_RATIO_RANGE = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10  # torchvision RandomResizedCrop.get_params
MIXUP_PROB, MIXUP_SWITCH_PROB = 1.0, 0.5  # MAE fine-tuning (timm defaults)

# columns of the per-image uniform draws
_AREA = slice(0, CROP_ATTEMPTS)
_RATIO = slice(CROP_ATTEMPTS, 2 * CROP_ATTEMPTS)
_CENTRE_X, _CENTRE_Y, _HFLIP, _VFLIP, _ANGLE, _GAMMA, _CONTRAST = range(
    2 * CROP_ATTEMPTS, 2 * CROP_ATTEMPTS + 7
)
_DRAWS = 2 * CROP_ATTEMPTS + 7


def _uniform(draws: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * draws


def crop_size(area_draws: torch.Tensor, ratio_draws: torch.Tensor, scale: tuple[float, float]):
    """Width and height (fractions of a square image's side) of torchvision's random resized crop.

    Each row holds `CROP_ATTEMPTS` uniform draws for the area and for the log aspect ratio; the first
    attempt whose crop fits inside the image is used, and a row with none falls back to the whole image.
    """
    area = _uniform(area_draws, *scale)
    ratio = torch.exp(_uniform(ratio_draws, *(math.log(bound) for bound in ASPECT_RATIO_RANGE)))
    width, height = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (width <= 1.0) & (height <= 1.0)
    first = fits.int().argmax(dim=1, keepdim=True)
    any_fits = fits.any(dim=1)
    one = torch.ones_like(any_fits, dtype=width.dtype)
    width = torch.where(any_fits, width.gather(1, first).squeeze(1), one)
    height = torch.where(any_fits, height.gather(1, first).squeeze(1), one)
    return width, height


def augment_batch(
    images: torch.Tensor,
    params: AugmentParams,
    generator: torch.Generator,
    draw_size: int | None = None,
    draw_offset: int = 0,
) -> torch.Tensor:
    """Augment uint8 images [B, H, W] (or [B, 1, H, W], square) into float [B, 1, H, W] in [0, 1].

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
    draws = torch.rand(total, _DRAWS, generator=generator, device=device)[draw_offset : draw_offset + batch]
    noise = torch.randn(total, *pixels.shape[1:], generator=generator, device=device)
    noise = noise[draw_offset : draw_offset + batch]

    # Output point o (normalised coordinates, y down) reads the crop at S o + t, which the flips F read
    # from the rotated image, which reads the original at A F (S o + t): A samples a counter-clockwise
    # rotation by `angle` as displayed (torchvision's sign).
    width, height = crop_size(draws[:, _AREA], draws[:, _RATIO], params.crop_scale)
    centre_x = (draws[:, _CENTRE_X] * 2 - 1) * (1 - width)
    centre_y = (draws[:, _CENTRE_Y] * 2 - 1) * (1 - height)
    flip_x = torch.where(draws[:, _HFLIP] < params.hflip, -1.0, 1.0)
    flip_y = torch.where(draws[:, _VFLIP] < params.vflip, -1.0, 1.0)
    angle = _uniform(draws[:, _ANGLE], *params.rotation_range) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    flipped_scale = torch.stack([flip_x * width, flip_y * height], dim=1)  # F S (diagonal)
    flipped_centre = torch.stack([flip_x * centre_x, flip_y * centre_y], dim=1)  # F t
    rotation = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)
    linear = rotation * flipped_scale.unsqueeze(1)  # A F S
    offset = (rotation @ flipped_centre.unsqueeze(2)).squeeze(2)  # A F t
    theta = torch.cat([linear, offset.unsqueeze(2)], dim=2)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    warped = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    gamma = torch.exp(_uniform(draws[:, _GAMMA], math.log(params.gamma[0]), math.log(params.gamma[1])))
    contrast = _uniform(draws[:, _CONTRAST], *params.contrast)
    warped = warped.clamp(0, 1).pow(gamma.view(-1, 1, 1, 1))
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    warped = (warped - mean) * contrast.view(-1, 1, 1, 1) + mean
    warped = warped * (1 + params.speckle_std * noise)
    return warped.clamp(0, 1)


def batch_erasing(probability: float) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Random erasing of a normalised batch [B, C, H, W] in place (timm `RandomErasing`, mode "pixel": with
    `probability` an image gets one box of per-pixel normal noise), or None when `probability` is 0.

    Its random numbers come from Python's generator and torch's default one (seeded and checkpointed by
    the training loop)."""
    if probability <= 0:
        return None

    def erase(inputs: torch.Tensor) -> torch.Tensor:
        return RandomErasing(probability, mode="pixel", max_count=1, device=inputs.device)(inputs)

    return erase


def batch_mixup(section: ClassifierTrainingParams, num_classes: int) -> Mixup | None:
    """timm `Mixup` for the section (mixup / CutMix, mode "batch": one λ per batch, images mixed with the
    batch reversed, `label_smoothing` folded into the soft targets), or None when both alphas are 0.

    `mixup(inputs, targets)` mixes `inputs` in place on their device and returns `(inputs, soft targets
    [B, C])`; it needs an even batch size. Its random numbers come from NumPy's global generator (seeded and
    checkpointed by the training loop)."""
    if section.mixup <= 0 and section.cutmix <= 0:
        return None
    return Mixup(
        mixup_alpha=section.mixup,
        cutmix_alpha=section.cutmix,
        prob=MIXUP_PROB,
        switch_prob=MIXUP_SWITCH_PROB,
        mode="batch",
        label_smoothing=section.label_smoothing,
        num_classes=num_classes,
    )
