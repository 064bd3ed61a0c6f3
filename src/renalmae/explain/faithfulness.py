"""Whether explanation maps are faithful to the model and class-specific: deletion / insertion, correlation.

Deletion and insertion (Petsiuk, Das & Saenko, 2018, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC, Section 4.1): the pixels of an image are ranked by the map, highest first.

- deletion: the top `i / steps` of the pixels are removed (set to the baseline, model input 0, the value
  Score-CAM's masks leave) for i = 0 … steps, and the explained class's probability is read after each;
  the deletion AUC is the area under that curve over the removed fraction [0, 1]. Lower is better: a
  faithful map removes what the model needs first.
- insertion: the same pixels are revealed, in the same order, on a Gaussian-blurred copy of the image
  (σ = H / 16 px, which erases structure smaller than a sixteenth of the image; RISE starts from a blurred
  image too). Higher is better.

A map is only as good as its margin over a random order: the same curves for a seeded random pixel
ranking are measured on the same images. Ties in a map (flat upsampled regions) are broken at random
too, so no raster order creeps in.

Class sensitivity: the Pearson correlation between the maps of two different classes on one image. A
class-specific explanation answers "why this class" differently per class (correlation well below 1);
undefined (NaN) when either map is constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from renalmae.explain.scorecam import Precision, autocast

BLUR_FRACTION = 1 / 16
"""σ of the insertion canvas's Gaussian blur, as a fraction of the image side."""


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves [B, steps + 1] (the explained class's probability) and their AUCs [B]."""

    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        return _auc(self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:
        return _auc(self.insertion)


def _auc(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area over the fraction axis [0, 1], equal steps."""
    return np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)


def pixel_ranks(maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rank of every pixel [B, H·W] by its map value, highest first (0 = first removed); ties at random."""
    flat = maps.flatten(1).float().cpu()
    shuffle = torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(len(flat))])
    order_in_shuffle = torch.argsort(-flat.gather(1, shuffle), dim=1, stable=True)
    order = shuffle.gather(1, order_in_shuffle)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order))
    return ranks


def random_ranks(shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """A seeded random pixel ranking [B, H·W] per image: the baseline a map must beat."""
    count, height, width = shape
    return torch.stack([torch.randperm(height * width, generator=generator) for _ in range(count)])


def blurred(images: torch.Tensor) -> torch.Tensor:
    """The insertion canvas: each image [B, C, H, W] Gaussian-blurred with σ = H · `BLUR_FRACTION`."""
    sigma = images.shape[-2] * BLUR_FRACTION
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    return gaussian_blur(images, kernel_size=[kernel, kernel], sigma=[sigma, sigma])


@torch.inference_mode()
def class_probabilities(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int = 64,
    precision: Precision = "auto",
) -> torch.Tensor:
    """Softmax probability [B] of class `targets[i]` for each input [B, C, H, W], `batch_size` at a time,
    on the inputs' device."""
    device = inputs.device
    out = []
    for start in range(0, len(inputs), batch_size):
        with autocast(device, precision):
            logits = model(inputs[start : start + batch_size]).float()
        out.append(logits.softmax(-1).gather(1, targets[start : start + batch_size, None])[:, 0])
    return torch.cat(out)


@torch.inference_mode()
def perturbation_curves(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    ranks: dict[str, torch.Tensor],
    steps: int = 8,
    batch_size: int = 64,
    precision: Precision = "auto",
) -> dict[str, Curves]:
    """Deletion and insertion curves of `images` [B, C, H, W] (model input) for each pixel ranking in `ranks`.

    `ranks`: name → [B, H·W] (from `pixel_ranks` / `random_ranks`). The curve ends are shared between the
    rankings (the clean image, the all-baseline image and the blurred canvas), so each ranking costs
    2·(steps − 1) forward passes per image.
    """
    model.eval()
    device = next(model.parameters()).device
    images = images.to(device=device, dtype=torch.float32)
    targets = targets.to(device)
    canvas = blurred(images)
    count, pixels = images.shape[0], images.shape[-2] * images.shape[-1]

    def probability(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return class_probabilities(model, inputs, classes, batch_size, precision)

    clean = probability(images, targets)
    empty = probability(torch.zeros_like(images), targets)
    start_canvas = probability(canvas, targets)
    results = {}
    for name, rank in ranks.items():
        rank = rank.to(device).view(count, 1, *images.shape[-2:])
        deletion, insertion = [clean], [start_canvas]
        for step in range(1, steps):
            shown = (rank < round(step / steps * pixels)).to(images.dtype)
            inputs = torch.cat([images * (1 - shown), images * shown + canvas * (1 - shown)])
            both = probability(inputs, targets.repeat(2))
            deletion.append(both[:count])
            insertion.append(both[count:])
        deletion.append(empty)
        insertion.append(clean)
        results[name] = Curves(
            deletion=torch.stack(deletion, dim=1).cpu().numpy(),
            insertion=torch.stack(insertion, dim=1).cpu().numpy(),
        )
    return results


def map_correlation(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Pearson correlation [B] of two maps [B, H, W] of each image; NaN where a map is constant."""
    a = first.flatten(1).double().cpu()
    b = second.flatten(1).double().cpu()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    correlation = (a * b).sum(dim=1) / denominator
    correlation[denominator == 0] = float("nan")
    return correlation.numpy()
