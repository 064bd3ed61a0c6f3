"""Which holdout images the explain step measures: every masked image, or a seeded draw spread over series."""

from __future__ import annotations

import numpy as np
import pandas as pd

from renalmae.explain.selection import measured_images


def _rows(group_sizes: dict[str, int]) -> pd.DataFrame:
    groups = [name for name, size in group_sizes.items() for _ in range(size)]
    return pd.DataFrame({"id": [f"img{i:03d}" for i in range(len(groups))], "group": groups})


def test_every_masked_image_is_measured_when_they_fit():
    rows = _rows({"a": 3, "b": 2})
    has_mask = np.array([True, False, True, True, True])

    measured = measured_images(rows, has_mask, max_images=10, seed=0)

    assert measured["id"].tolist() == ["img000", "img002", "img003", "img004"]


def test_a_draw_holds_every_series_before_a_second_frame_of_any():
    """One series of 90 frames and ten of one frame: a frame-level draw of 20 would take ~18 from the big
    series; the spread draw takes all ten small series and fills up from the big one."""
    rows = _rows({"big": 90, **{f"s{i}": 1 for i in range(10)}})

    measured = measured_images(rows, np.ones(len(rows), dtype=bool), max_images=20, seed=0)

    assert len(measured) == 20 and measured["id"].is_monotonic_increasing
    assert measured["group"].value_counts().to_dict() == {"big": 10, **{f"s{i}": 1 for i in range(10)}}


def test_the_draw_is_seeded():
    rows = _rows({"a": 30, "b": 30})
    has_mask = np.ones(len(rows), dtype=bool)

    first = measured_images(rows, has_mask, 10, seed=3)["id"].tolist()

    assert measured_images(rows, has_mask, 10, seed=3)["id"].tolist() == first
    assert measured_images(rows, has_mask, 10, seed=4)["id"].tolist() != first
