"""The explain figures: the grid figure carries no heading of its own where the page already gives one."""

from __future__ import annotations

import numpy as np
from PIL import Image

from renalmae.explain.figures import ExplainedImage, grid_figure


def _item(label: str) -> ExplainedImage:
    image = np.zeros((16, 16), dtype=np.uint8)
    cam = np.zeros((16, 16))
    cam[4:8, 4:8] = 1.0
    return ExplainedImage(
        image_id="a", label=label, image=image, cam=cam, mask=np.zeros_like(image),
        explained_class=label, predicted_class=label, probability=0.9,
    )  # fmt: skip


def test_an_untitled_grid_is_shorter_than_a_titled_one_by_the_title(tmp_path):
    items = [_item("utd"), _item("mcdk")]

    untitled = Image.open(grid_figure(tmp_path / "untitled.png", items)).size
    titled = Image.open(grid_figure(tmp_path / "titled.png", items, "usfmae · binary · fold 0")).size

    assert untitled[1] < titled[1]
