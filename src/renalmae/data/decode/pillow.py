"""PNG / JPEG via Pillow: one file's bytes → the upright image in its own mode, its grey levels, its mask.

Orientation: an EXIF Orientation tag (JPEG, PNG) is applied to images and masks alike, so both are
upright as any viewer shows them and a mask drawn on the upright view fits its image.

Masks: which pixels are lesion depends on the mode. Greyscale, 16-bit and 1-bit masks: non-zero.
RGB: non-black. With an alpha channel (RGBA, LA, or a palette with transparency): the alpha carries
the mask when the visible pixels all have one colour (a drawing tool's export); when the colours vary
too they must mark the same pixels as the alpha, else the mask is ambiguous and refused. A mask that
marks every pixel is refused: its background is not 0 or transparent.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from renalmae.data.decode.pixels import BadImage, to_uint8

PILLOW_FORMATS = ("JPEG", "PNG")
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def open_pillow(data: bytes, max_pixels: int, grey_draft: bool = False) -> Image.Image:
    """PNG / JPEG bytes → the full-resolution image, upright (EXIF Orientation applied), in its own mode.

    The size is checked before decoding. `grey_draft` lets libjpeg emit the luma plane of a colour JPEG
    directly (images only: a mask needs its colours).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(
                f"image is {width}x{height} = {width * height:,} pixels, over data.max_image_pixels "
                f"({max_pixels:,}; decompression-bomb guard): shrink it or raise the limit"
            )
        if grey_draft and image.format == "JPEG" and image.mode != "L":
            image.draft("L", image.size)
        image.load()
    except Image.DecompressionBombError as error:
        raise BadImage(f"decompression bomb refused by Pillow ({error})") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable PNG / JPEG image (corrupt or another format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImage(f"corrupt image data ({error})") from None
    return upright(image)


def upright(image: Image.Image) -> Image.Image:
    """`image` as a viewer shows it: its EXIF Orientation (2-8) applied; unreadable EXIF counts as none."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, struct.error):
        return image
    if orientation not in range(2, 9):
        return image
    return ImageOps.exif_transpose(image)


def pillow_grey(image: Image.Image) -> Image.Image:
    """Any Pillow mode → `L`: 16-bit and float data scaled from their own range, colour by ITU-R 601 luma."""
    if image.mode in HIGH_BIT_MODES:
        return Image.fromarray(to_uint8(np.asarray(image)))
    return image if image.mode == "L" else image.convert("L")


def mask_pixels(image: Image.Image) -> np.ndarray:
    """bool [H, W]: which pixels of a mask image are lesion, by its mode (see the module docstring)."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # the palette's colours and its transparency
    if image.mode == "1" or image.mode in HIGH_BIT_MODES or image.mode == "L":
        marked = np.asarray(image) != 0
    elif image.mode in ("LA", "La"):
        marked = _alpha_or_colour(np.asarray(image.convert("LA")))
    elif image.mode in ("RGBA", "RGBa"):
        marked = _alpha_or_colour(np.asarray(image.convert("RGBA")))
    else:
        marked = np.asarray(image.convert("RGB")).any(axis=-1)
    if marked.all():
        raise BadImage(
            "mask marks every pixel as lesion: its background must be 0 (black) or transparent; "
            "re-export the mask with 0 = background"
        )
    return marked


def _alpha_or_colour(pixels: np.ndarray) -> np.ndarray:
    """Lesion pixels of a mask with alpha (last channel): the alpha, the colour, or refused as ambiguous."""
    colour, alpha = pixels[..., :-1], pixels[..., -1]
    by_colour = colour.any(axis=-1)
    if alpha.min() == alpha.max():
        return by_colour  # a constant alpha carries nothing
    by_alpha = alpha > 0
    visible = colour[by_alpha]
    if (visible == visible[0]).all() or np.array_equal(by_alpha, by_colour):
        return by_alpha
    raise BadImage(
        "mask is ambiguous: its alpha channel and its colours mark different pixels; export the lesion "
        "either as transparency over one colour or as a greyscale / 1-bit PNG with 0 = background"
    )
