"""The imaging sector of an ultrasound screen export, and the `data.crop` box cut from an upright image.

Screen exports carry burned-in text, calipers, colour bars and a black frame around the fan; `auto`
crops to the imaging sector (`sector_box`), a fixed `x0,y0,x1,y1` to that box. The box is cut from
the upright image and its mask alike, before padding and resizing.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from renalmae.data.decode.pixels import BadImage

SECTOR_SIDE = 256  # the sector is found on a copy at most this large: enough for a box, fast
SECTOR_OPENING = 5  # pixels (of that copy): strokes and bars thinner than this are not the sector


def parse_crop(crop: str) -> None | str | tuple[int, int, int, int]:
    """`none` → None, `auto` → "auto", `x0,y0,x1,y1` → the box (validated where params are read)."""
    crop = crop.strip().lower()
    if crop == "none":
        return None
    if crop == "auto":
        return "auto"
    x0, y0, x1, y1 = (int(value) for value in crop.split(","))
    return x0, y0, x1, y1


def crop_box(image: Image.Image, crop: str) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1; x1, y1 exclusive) `crop` cuts from the upright `image`, or None."""
    rule = parse_crop(crop)
    if rule is None:
        return None
    if rule == "auto":
        return sector_box(image)
    width, height = image.size
    if rule[2] > width or rule[3] > height:
        raise BadImage(
            f"data.crop box {crop} does not fit the {width}x{height} image (upright): images of another "
            "layout need their own box, or data.crop: auto"
        )
    return rule


def sector_box(image: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1; x1, y1 exclusive) of the imaging sector of an ultrasound screen export.

    The sector is the largest connected region brighter than the darkest level (the black frame), after a
    morphological opening that detaches burned-in text, calipers, thin scale bars and lines; its box is
    then grown back over the lit pixels within the opening's reach, so the fan's sharp corners are kept.
    An image with no such region keeps its whole extent. Runs on a copy at most `SECTOR_SIDE` pixels.
    """
    from scipy import ndimage

    width, height = image.size
    scale = min(1.0, SECTOR_SIDE / max(width, height))
    small = image.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
    ) if scale < 1 else image  # fmt: skip
    pixels = np.asarray(small)
    lit = pixels > pixels.min()
    structure = np.ones((SECTOR_OPENING, SECTOR_OPENING), dtype=bool)
    labels, count = ndimage.label(ndimage.binary_opening(lit, structure=structure))
    if count == 0:
        return 0, 0, width, height
    largest = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    sector = ndimage.binary_dilation(largest, structure=structure) & lit
    rows, columns = ndimage.find_objects(sector.astype(np.uint8))[0]
    x_scale, y_scale = width / small.size[0], height / small.size[1]
    return (
        max(0, int(np.floor(columns.start * x_scale))),
        max(0, int(np.floor(rows.start * y_scale))),
        min(width, int(np.ceil(columns.stop * x_scale))),
        min(height, int(np.ceil(rows.stop * y_scale))),
    )
