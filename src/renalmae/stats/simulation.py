"""Simulated clustered test sets on which two models are equally good: how the tests are calibrated.

Clips (clusters) of 1 .. 2 x `mean_size` - 1 frames; every frame of a clip has the clip's label and shares
the clip's own effect on a model's score, as frames of one ultrasound clip do. A test at level alpha should
call equally good models different about alpha of the time. Used by tests/unit/stats/test_clustered.py
(asserted rates) and benchmarks/calibration.py (printed rates over more simulations); nothing in the
pipeline imports it.
"""

from __future__ import annotations

import numpy as np


def clustered_set(
    rng: np.random.Generator, clusters: int = 60, mean_size: int = 8, positive_rate: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """(y, groups): (n,) 0/1 labels and (n,) clip index of each frame, every frame of a clip one label."""
    positive_clip = rng.random(clusters) < positive_rate
    sizes = rng.integers(1, 2 * mean_size, clusters)
    groups = np.repeat(np.arange(clusters), sizes)
    return np.repeat(positive_clip, sizes).astype(int), groups


def equally_good_scores(
    rng: np.random.Generator, y: np.ndarray, groups: np.ndarray, clip_sd: float = 1.0, frame_sd: float = 0.4
) -> np.ndarray:
    """(n,) scores of one model: the label, the clip's own effect (shared by its frames), frame noise."""
    clip_effect = rng.normal(0.0, clip_sd, groups.max() + 1)
    return y + clip_effect[groups] + rng.normal(0.0, frame_sd, len(y))
