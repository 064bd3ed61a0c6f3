"""Whether a model uses the lesion, asked of the model, not of a map: remove it, or its shape elsewhere.

For one image `X` with a lesion mask `M` and its explained class `c` (probability `p_c`):

- drop when the lesion is removed: `p_c(X) − p_c(X with M removed)`;
- drop when the same shape is removed elsewhere: the mean of `p_c(X) − p_c(X with M + t removed)` over
  `placements` translations `t`, drawn with a seed from every translation that keeps the shape inside the
  image and shares no pixel with the lesion;
- excess: the first minus the second. A model that relies on the lesion loses more when the lesion goes
  than when the same amount of image of the same shape goes anywhere else (excess > 0); a model that
  ignores it does not (excess ≈ 0), and one that relies on the rest of the frame loses less (excess < 0).

Removal is the deletion curve's (`renalmae.explain.faithfulness`): the pixels are set to the baseline, model
input 0. The answer uses no explanation method, so it can check one. An image whose lesion leaves no
place for its shape elsewhere has no elsewhere drop (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.signal import fftconvolve
from torch import nn

from renalmae.explain.faithfulness import class_probabilities
from renalmae.explain.scorecam import Precision
from renalmae.explain.summary import mean_interval


@dataclass(frozen=True)
class LesionTest:
    """Per image [N]: the explained class's probability drops, and how many placements gave the second."""

    lesion_drop: np.ndarray
    elsewhere_drop: np.ndarray  # mean over the placements; NaN where none fits
    placements: np.ndarray  # int: placements used per image (0 = none fits, or no mask)

    @property
    def excess(self) -> np.ndarray:
        return self.lesion_drop - self.elsewhere_drop

    @property
    def lesion_larger(self) -> np.ndarray:
        """1.0 where removing the lesion lowers the probability more than the mean elsewhere, else 0.0."""
        larger = (self.lesion_drop > self.elsewhere_drop).astype(float)
        return np.where(np.isfinite(self.elsewhere_drop), larger, np.nan)


def free_translations(mask: np.ndarray) -> np.ndarray:
    """Every translation (dy, dx) [T, 2] that keeps `mask` [H, W] inside the image and off itself.

    Overlap of a shape with its translate by t is the mask's autocorrelation at t (one FFT for all t);
    the bounding box bounds the translations that stay inside."""
    mask = np.asarray(mask).astype(bool)
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return np.empty((0, 2), dtype=int)
    overlap = fftconvolve(mask.astype(float), mask[::-1, ::-1].astype(float), mode="full")
    dy, dx = np.meshgrid(np.arange(-(height - 1), height), np.arange(-(width - 1), width), indexing="ij")
    inside = (
        (dy >= -rows.min()) & (dy <= height - 1 - rows.max())
        & (dx >= -cols.min()) & (dx <= width - 1 - cols.max())
    )  # fmt: skip
    free = inside & (overlap < 0.5)
    return np.stack([dy[free], dx[free]], axis=1)


def placements(mask: np.ndarray, count: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """Up to `count` distinct free translations [k, 2] of `mask`, drawn with `seed` (all when fewer fit)."""
    free = free_translations(mask)
    if len(free) <= count:
        return free
    return free[np.random.default_rng(seed).choice(len(free), size=count, replace=False)]


def shifted(mask: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """`mask` [H, W] moved by (dy, dx) (which keeps it inside the image)."""
    dy, dx = (int(value) for value in translation)
    return np.roll(np.asarray(mask).astype(bool), (dy, dx), axis=(0, 1))


@torch.inference_mode()
def lesion_test(
    model: nn.Module,
    inputs: torch.Tensor,
    masks: np.ndarray,
    targets: torch.Tensor,
    count: int = 16,
    seed: int = 0,
    batch_size: int = 64,
    precision: Precision = "auto",
    image_keys: list[int] | None = None,
) -> LesionTest:
    """The lesion test of `inputs` [N, C, H, W] (model input) with lesion `masks` [N, H, W] for `targets` [N].

    `count`: placements elsewhere per image; image `i`'s are drawn with the seed `(seed, image_keys[i])`
    (default its index), so they do not depend on how images are batched. Images without a mask get NaN.
    All removals of all images run as one stream of forward passes of `batch_size`.
    """
    model.eval()
    device = next(model.parameters()).device
    keys = list(range(len(inputs))) if image_keys is None else list(image_keys)
    removals, owners, kinds = [], [], []
    used = np.zeros(len(inputs), dtype=int)
    for index, mask in enumerate(masks):
        mask = np.asarray(mask).astype(bool)
        if not mask.any():
            continue
        moves = placements(mask, count, (seed, keys[index]))
        used[index] = len(moves)
        removals += [mask, *(shifted(mask, move) for move in moves)]
        owners += [index] * (1 + len(moves))
        kinds += [0] + [1] * len(moves)
    lesion_drop = np.full(len(inputs), np.nan)
    elsewhere_drop = np.full(len(inputs), np.nan)
    if not removals:
        return LesionTest(lesion_drop, elsewhere_drop, used)
    inputs = inputs.to(device=device, dtype=torch.float32)
    targets = targets.to(device).long()
    clean = class_probabilities(model, inputs, targets, batch_size, precision)
    owner = torch.as_tensor(owners, device=device)
    stack = torch.as_tensor(np.stack(removals), device=device)
    removed = torch.empty(len(owners), device=device)
    for start in range(0, len(owners), batch_size):
        part = slice(start, start + batch_size)
        kept = (~stack[part]).to(inputs.dtype)[:, None]
        removed[part] = class_probabilities(
            model, inputs[owner[part]] * kept, targets[owner[part]], batch_size, precision
        )
    drops = (clean[owner] - removed).cpu().numpy()
    owners_array, kinds_array = np.asarray(owners), np.asarray(kinds)
    for index in np.unique(owners_array):
        mine = owners_array == index
        lesion_drop[index] = drops[mine & (kinds_array == 0)][0]
        elsewhere = drops[mine & (kinds_array == 1)]
        elsewhere_drop[index] = elsewhere.mean() if len(elsewhere) else np.nan
    return LesionTest(lesion_drop, elsewhere_drop, used)


LESION_METRICS = ("lesion_drop", "elsewhere_drop", "lesion_excess", "lesion_larger")
"""Per-image lesion-test columns of `measurements.parquet`, summarised per class by `summarise_lesion`."""


def summarise_lesion(
    table: pd.DataFrame, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict[str, dict]:
    """{class | 'all': {metric: {mean, low, high, n, groups}}} of the lesion test over the rows of `table`
    (one per image: `label`, `group` and `LESION_METRICS`) that have a lesion drop; cluster bootstrap over
    `group` (`renalmae.explain.summary`)."""
    rows = table[np.isfinite(table["lesion_drop"].to_numpy(dtype=float))]
    per_class: dict[str, dict] = {}
    for class_name, members in [*rows.groupby("label", sort=False), ("all", rows)]:
        per_class[str(class_name)] = {
            metric: mean_interval(members[metric], members["group"], confidence, resamples, seed)
            for metric in LESION_METRICS
        }
    return per_class


def uses_lesion(entry: dict) -> bool | None:
    """The answer of one summary entry (`summarise_lesion`): True when removing the lesion lowers the class's
    probability more than removing its shape elsewhere, i.e. the excess's interval lies above 0 (its mean,
    when fewer than two groups give no interval); False otherwise; None when nothing was measured."""
    excess = entry["lesion_excess"]
    if excess["mean"] is None:
        return None
    bound = excess["low"] if excess["low"] is not None else excess["mean"]
    return bool(bound > 0)
