"""Test kit for the models tests: tiny params (32 px images, a 2-block ViT, a 1-block decoder)."""

from __future__ import annotations

from functools import partial

from renalmae import testing

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2


MODELS = {
    "data": {"image_size": IMAGE_SIZE},
    "encoder": {"patch_size": PATCH_SIZE, "depth": 2},
    "baseline": {"arch": "densenet121"},
}
tiny_params = partial(testing.tiny_params, MODELS)
