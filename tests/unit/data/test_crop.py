"""`data.crop`: ingest crops ultrasound screen exports to the imaging sector, image and mask alike.

Synthetic screens (speckled fan, burned-in text, a grey-scale bar, calipers) have a known sector box;
the real fetal head frames (../shared/data/hc18_fetal_head) carry a scale bar beside the fan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ingestkit import noise, screen_frame, tiny_params, write_manifest, write_png
from PIL import Image

from renalmae.data.cache import load_ingested
from renalmae.data.decode import Preparation, parse_crop, prepare_pixels, sector_box, to_square
from renalmae.errors import DataError, ParamsError
from renalmae.steps import ingest

CACHE = 32


def screens(tmp_path: Path, count: int = 3) -> tuple[Path, list[tuple]]:
    """Manifest of `count` screen exports with lesion masks; their (image, mask, box)."""
    rows, frames = [], []
    for seed in range(count):
        image, mask, box = screen_frame(seed)
        write_png(tmp_path / f"screen_{seed}.png", image)
        write_png(tmp_path / f"screen_{seed}_mask.png", mask)
        rows.append({"image": f"screen_{seed}.png", "mask": f"screen_{seed}_mask.png", "label": "utd"})
        frames.append((image, mask, box))
    return write_manifest(tmp_path / "manifest.csv", rows), frames


def box_of(cell: str) -> tuple[int, ...]:
    return tuple(int(value) for value in cell.split(","))


def test_auto_crop_finds_the_sector_behind_text_a_grey_bar_and_calipers(tmp_path):
    manifest, frames = screens(tmp_path)
    data = load_ingested(ingest.run(tiny_params(manifest, data={"crop": "auto"}), tmp_path / "ingested"))
    for index, (image, mask, true_box) in enumerate(frames):
        found = box_of(data.table["crop"].iloc[index])
        assert np.abs(np.subtract(found, true_box)).max() <= 2, f"screen {index}: {found} vs {true_box}"
        x0, y0, x1, y1 = found
        assert np.array_equal(data.images[index], to_square(Image.fromarray(image[y0:y1, x0:x1]), CACHE))
        expected_mask = to_square(Image.fromarray((mask[y0:y1, x0:x1] > 0).astype(np.uint8)), CACHE, True)
        assert np.array_equal(data.masks[index], expected_mask), "the mask is cropped with its image"


def test_fixed_crop_box_applies_to_image_and_mask_alike(tmp_path):
    manifest, frames = screens(tmp_path, count=1)
    params = tiny_params(manifest, data={"crop": "28,22,293,220"})
    data = load_ingested(ingest.run(params, tmp_path / "ingested"))
    image, mask, _ = frames[0]
    assert data.table["crop"].tolist() == ["28,22,293,220"]
    assert np.array_equal(data.images[0], to_square(Image.fromarray(image[22:220, 28:293]), CACHE))
    assert data.masks[0].sum() == to_square(Image.fromarray(mask[22:220, 28:293] // 255), CACHE, True).sum()


def test_without_crop_the_table_says_none_and_images_are_whole(tmp_path):
    manifest, frames = screens(tmp_path, count=1)
    data = load_ingested(ingest.run(tiny_params(manifest), tmp_path / "ingested"))
    assert data.table["crop"].isna().all()
    assert np.array_equal(data.images[0], to_square(Image.fromarray(frames[0][0]), CACHE))


def test_crop_box_outside_an_image_is_a_bad_file(tmp_path):
    manifest, _ = screens(tmp_path, count=1)
    write_png(tmp_path / "small.png", noise(1))  # 40 x 40: the box does not fit
    rows = [{"image": "screen_0.png", "label": "utd"}, {"image": "small.png", "label": "normal"}]
    params = tiny_params(write_manifest(tmp_path / "manifest.csv", rows), data={"crop": "28,22,293,220"})
    with pytest.raises(DataError) as error:
        ingest.run(params, tmp_path / "ingested")
    message = str(error.value)
    assert message.startswith("1 bad input file") and "small.png" in message and "data.crop" in message


@pytest.mark.parametrize("value", ["sector", "10,20,5,60", "10,20,30", "-1,0,10,10", "1.5,0,10,10"])
def test_crop_param_that_is_not_none_auto_or_a_box_is_refused(value):
    with pytest.raises(ParamsError, match="data.crop"):
        tiny_params("phantom://renal?n=10&seed=0", data={"crop": value})


def test_predict_crops_like_the_training_ingest():
    image, _, box = screen_frame(1)
    cropped = Preparation(size=CACHE, crop="auto")
    x0, y0, x1, y1 = sector_box(Image.fromarray(image))
    assert np.array_equal(
        prepare_pixels(image, cropped), to_square(Image.fromarray(image[y0:y1, x0:x1]), CACHE)
    )
    assert parse_crop("none") is None and parse_crop(" 1, 2,3,4") == (1, 2, 3, 4)


def fan_texture(pixels: np.ndarray) -> np.ndarray:
    """Pixels inside solid, speckled tissue: every neighbour lit (> 0) and local grey std above 8."""
    from scipy import ndimage

    values = pixels.astype(np.float32)
    mean, mean_square = ndimage.uniform_filter(values, 7), ndimage.uniform_filter(values * values, 7)
    spread = np.sqrt(np.maximum(mean_square - mean * mean, 0))
    return (ndimage.minimum_filter(pixels, 7) > 0) & (spread > 8)


@pytest.mark.realdata
def test_auto_crop_on_fetal_head_frames_keeps_the_fan_and_cuts_the_frame(shared_data):
    frames = sorted((shared_data / "hc18_fetal_head").glob("*.png"))[::27]  # 50 of the 1,334 frames
    assert len(frames) >= 40
    areas = []
    for path in frames:
        pixels = np.asarray(Image.open(path).convert("L"))
        x0, y0, x1, y1 = sector_box(Image.fromarray(pixels))
        areas.append((x1 - x0) * (y1 - y0) / pixels.size)
        assert areas[-1] >= 0.5, f"{path.name}: the fan is most of the frame"
        texture = fan_texture(pixels)
        texture[int(0.92 * pixels.shape[0]) :] = False  # the scanner's cine strip along the bottom
        kept = texture[y0:y1, x0:x1].sum()
        assert kept >= 0.98 * texture.sum(), f"{path.name}: fan tissue was cut off by {(x0, y0, x1, y1)}"
    assert max(areas) < 0.99, "every frame loses its scale bar, black frame or cine strip"
