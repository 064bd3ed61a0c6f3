"""Pixel helpers every decoder shares: the `BadImage` error, uint8 scaling, luma, the pixel hash."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from renalmae.params import DataParams

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
DEFAULT_MAX_IMAGE_PIXELS: int = DataParams.model_fields["max_image_pixels"].default


class BadImage(Exception):
    """A file that cannot become an image; the message is the rule it broke (no path: the caller adds it)."""


def pixel_sha256(pixels: np.ndarray | Image.Image) -> str:
    """sha256 of a greyscale image's pixels and shape (so a re-encoded copy hashes the same)."""
    if isinstance(pixels, Image.Image):
        (width, height), raw = pixels.size, pixels.tobytes()
    else:
        (height, width), raw = pixels.shape, np.ascontiguousarray(pixels).tobytes()
    digest = hashlib.sha256(f"{height}x{width}:".encode())
    digest.update(raw)
    return digest.hexdigest()


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale any integer or float greyscale array to uint8 from its own range (8-bit data is kept as is)."""
    if pixels.dtype == np.uint8:
        return pixels
    pixels = pixels.astype(np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)


def rgb_to_grey(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.round(pixels[..., :3] @ LUMA_WEIGHTS).astype(np.uint8)
    return to_uint8(pixels[..., :3] @ LUMA_WEIGHTS)
