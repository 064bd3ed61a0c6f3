"""A trained tiny ViT's Score-CAM puts the lesion's energy well above a uniform map's share (issue 8).

Both tests train with plain AdamW on an easy phantom (difficulty 0, balanced classes, 64 px, patch 8,
horizontal flips, fixed seed 0), then measure Score-CAM maps of the true class on 30 fresh utd / mcdk
images. The slow test is the issue's check (ratio > 1.5 for both lesions, 800 images x 20 epochs,
~25 CPU-seconds) and reports a tiny DenseNet trained the same way beside it (printed, not asserted).
The default-run variant trains briefly (400 images x 12 epochs, ~7 CPU-seconds) and asserts less: the
dilated pelvis is found clearly (ratio > 2; an untrained ViT scores 1.1-1.9) and the cysts better than
uniform. Short ViT training from scratch is seed-sensitive, hence the fixed seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from explainkit import phantom_localisation

LESIONS = ("utd", "mcdk")


def _ratios(per_image: dict[str, list[float]]) -> dict[str, float]:
    assert all(len(per_image[lesion]) == 15 for lesion in LESIONS)
    return {lesion: float(np.mean(per_image[lesion])) for lesion in LESIONS}


def test_briefly_trained_vit_maps_point_at_lesions():
    ratios = _ratios(phantom_localisation("vit", n=400, epochs=12, lr=2e-3))
    print(f"ViT (brief training) energy-in-mask ratio vs uniform: {ratios}")
    assert ratios["utd"] > 2.0, ratios
    assert ratios["mcdk"] > 1.0, ratios


@pytest.mark.slow
def test_trained_vit_maps_concentrate_on_lesions_and_densenet_is_reported(capsys):
    vit = _ratios(phantom_localisation("vit", n=800, epochs=20, lr=1e-3))
    densenet = _ratios(phantom_localisation("cnn", n=800, epochs=20, lr=1e-3))
    with capsys.disabled():
        print(f"\nenergy-in-mask ratio vs uniform: ViT {vit}; DenseNet (not asserted) {densenet}")
    assert all(ratio > 1.5 for ratio in vit.values()), vit
