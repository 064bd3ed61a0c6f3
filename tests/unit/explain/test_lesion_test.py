"""The lesion test asks the model, not a map: a model built to use only the lesion passes it, one built to
use only the image border fails it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from explainkit import lesion_images, region_model

from renalmae.explain.lesion import (
    free_translations,
    lesion_test,
    placements,
    shifted,
    summarise_lesion,
    uses_lesion,
)
from renalmae.models.preprocess import to_model_input

GROUPS = np.repeat([f"series{i}" for i in range(6)], 2)


def _summary(model, images, masks, count=16):
    result = lesion_test(
        model, to_model_input(torch.from_numpy(images)), masks, torch.zeros(len(images), dtype=torch.long),
        count=count, seed=0, batch_size=37,
    )  # fmt: skip
    table = pd.DataFrame({
        "label": "utd", "group": GROUPS[: len(images)], "lesion_drop": result.lesion_drop,
        "elsewhere_drop": result.elsewhere_drop, "lesion_excess": result.excess,
        "lesion_larger": result.lesion_larger,
    })  # fmt: skip
    return result, summarise_lesion(table, resamples=200)


def test_a_model_that_uses_only_the_lesion_passes_the_lesion_test():
    images, masks, disc, _ = lesion_images()
    result, summary = _summary(region_model(disc), images, masks)
    assert (result.placements == 16).all()
    assert np.all(result.lesion_drop > 0.2)  # removing the lesion takes its evidence away
    np.testing.assert_allclose(result.elsewhere_drop, 0.0, atol=1e-6)  # nothing elsewhere counts
    assert summary["all"]["lesion_larger"]["mean"] == 1.0
    assert summary["all"]["lesion_excess"]["low"] > 0.2
    assert uses_lesion(summary["all"]) is True
    assert uses_lesion(summary["utd"]) is True


def test_a_model_that_uses_only_the_image_border_fails_the_lesion_test():
    images, masks, _, border = lesion_images()
    result, summary = _summary(region_model(border), images, masks)
    np.testing.assert_allclose(result.lesion_drop, 0.0, atol=1e-6)  # the lesion is off the border
    assert np.all(result.elsewhere_drop > 0)  # placements that reach the border remove its evidence
    assert summary["all"]["lesion_larger"]["mean"] == 0.0
    assert summary["all"]["lesion_excess"]["high"] < 0
    assert uses_lesion(summary["all"]) is False


def test_placements_stay_inside_the_image_and_off_the_lesion_and_are_seeded():
    _, masks, disc, _ = lesion_images(count=1)
    moves = placements(disc, 50, (0, 3))
    assert len(moves) == 50 and len({tuple(m) for m in moves}) == 50
    for move in moves:
        moved = shifted(disc, move)
        assert moved.sum() == disc.sum()  # nothing wrapped around the border
        assert not (moved & disc).any()
    np.testing.assert_array_equal(moves, placements(disc, 50, (0, 3)))
    assert not np.array_equal(moves, placements(disc, 50, (0, 4)))


def test_a_lesion_that_leaves_no_room_elsewhere_has_no_elsewhere_drop():
    images, _, _, _ = lesion_images(count=2)
    masks = np.zeros_like(images)
    masks[0, 10:54, 10:54] = 1  # larger than half the image: no free placement
    assert len(free_translations(masks[0])) == 0
    result = lesion_test(
        region_model(masks[0].astype(bool)), to_model_input(torch.from_numpy(images)), masks,
        torch.zeros(2, dtype=torch.long), count=8,
    )  # fmt: skip
    assert result.placements.tolist() == [0, 0]
    assert result.lesion_drop[0] > 0 and np.isnan(result.lesion_drop[1])  # image 1 has no mask
    assert np.isnan(result.elsewhere_drop).all() and np.isnan(result.lesion_larger).all()


def test_free_translations_match_a_brute_force_search():
    mask = np.zeros((12, 10), dtype=bool)
    mask[3:6, 2:4] = True
    mask[5, 4] = True
    expected = {
        (dy, dx)
        for dy in range(-11, 12)
        for dx in range(-9, 10)
        if all(0 <= r + dy < 12 and 0 <= c + dx < 10 for r, c in zip(*np.nonzero(mask), strict=True))
        and not (shifted(mask, (dy, dx)) & mask).any()
    }
    assert {tuple(t) for t in free_translations(mask).tolist()} == expected


@pytest.mark.parametrize("batch_size", [1, 64])
def test_the_lesion_test_does_not_depend_on_batching(batch_size):
    images, masks, disc, _ = lesion_images(count=3)
    inputs, targets = to_model_input(torch.from_numpy(images)), torch.zeros(3, dtype=torch.long)
    model = region_model(disc | np.roll(disc, 20, axis=1))
    one = lesion_test(model, inputs, masks, targets, count=5, batch_size=batch_size)
    parts = [lesion_test(model, inputs[i : i + 1], masks[i : i + 1], targets[i : i + 1], count=5,
                         image_keys=[i]) for i in range(3)]  # fmt: skip
    np.testing.assert_allclose(one.elsewhere_drop, [p.elsewhere_drop[0] for p in parts], atol=1e-6)
