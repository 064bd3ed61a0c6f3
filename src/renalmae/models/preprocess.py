"""Model input: the one mapping from cached uint8 greyscale images to the float tensor every model takes.

Every model in the project sees a float tensor `[B, 1, H, W]` equal to
`(uint8 / 255 - GREY_MEAN) / GREY_STD`. Training, Score-CAM and the MLflow pyfunc all call
`to_model_input`, so a model never sees differently scaled pixels at serving time than in training.
Greyscale stays one channel (`in_chans=1` everywhere); 3-channel checkpoints are adapted at load time
(see `renalmae.models.checkpoints`), not by repeating the image three times.
"""

from __future__ import annotations

import torch
from torch import Tensor

GREY_MEAN = 0.5
GREY_STD = 0.25

_SCALE = 1.0 / (255.0 * GREY_STD)
_SHIFT = GREY_MEAN / GREY_STD


def to_model_input(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 images `[B, H, W]` or `[B, 1, H, W]` → normalised float `[B, 1, H, W]` on the same device.

    Pure tensor arithmetic (no `.item()`, no host copy), so it runs inside a compiled or CUDA-graphed step.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"to_model_input expects uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"to_model_input expects [B, H, W] or [B, 1, H, W], got {tuple(images.shape)}")
    return images.to(dtype) * _SCALE - _SHIFT


def from_model_input(inputs: Tensor) -> Tensor:
    """Inverse of `to_model_input` for display: float `[B, 1, H, W]` → float in [0, 1] (clamped)."""
    return (inputs.float() * GREY_STD + GREY_MEAN).clamp(0.0, 1.0)
