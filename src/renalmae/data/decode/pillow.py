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

from renalmae.data.decode.pixels import LUMA_WEIGHTS, BadImage, to_uint8

PILLOW_FORMATS = ("JPEG", "PNG")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PILLOW_SIGNATURES = (PNG_SIGNATURE, b"\xff\xd8\xff")
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
DEEP_COLOUR_TYPES = {2: "RGB", 4: "grey + alpha", 6: "RGBA"}  # PNG colour types Pillow reads at 8 bits only
METADATA_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"iCCP")  # text, XMP, ICC profile: no pixels
METADATA_LIMITS = ("MAX_TEXT_CHUNK", "MAX_TEXT_MEMORY", "text chunks")  # Pillow's safety limits' messages
TRANSPOSES = {  # EXIF Orientation → the transpose that shows the image upright (as `ImageOps.exif_transpose`)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
        raise BadImage("not a readable PNG / JPEG / DICOM image (corrupt or another format)") from None
    except ValueError as error:
        if data.startswith(PNG_SIGNATURE) and any(limit in str(error) for limit in METADATA_LIMITS):
            # text, XMP or an ICC profile over Pillow's safety limit: the pixels are read without them
            return open_pillow(without_metadata(data), max_pixels, grey_draft)
        raise BadImage(f"corrupt image data ({error}); re-export the image") from None
    except (OSError, SyntaxError) as error:
        raise BadImage(f"corrupt image data ({error}); re-export the image") from None
    return upright(image)


def orientation(image: Image.Image) -> int:
    """The EXIF Orientation (1-8) of `image`; unreadable or out of range counts as 1 (as stored)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, struct.error):
        return 1
    return value if value in TRANSPOSES else 1


def upright(image: Image.Image) -> Image.Image:
    """`image` as a viewer shows it: its EXIF Orientation (2-8) applied; unreadable EXIF counts as none."""
    return image if orientation(image) == 1 else ImageOps.exif_transpose(image)


def without_metadata(data: bytes) -> bytes:
    """PNG bytes without their text, XMP and ICC chunks (`METADATA_CHUNKS`); EXIF and pixels are kept.

    PNG chunks are length, type, data, CRC (PNG specification, 5.3); a truncated tail is kept as it is,
    for the decoder to report.
    """
    kept, position = [data[:8]], 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        end = position + 12 + length
        if data[position + 4 : position + 8] not in METADATA_CHUNKS or end > len(data):
            kept.append(data[position:end])
        position = end
    return b"".join(kept)


def deep_colour(data: bytes) -> np.ndarray | None:
    """uint16 [H, W, C] (RGB, RGBA; grey + alpha as RGBA), as stored, of a 16-bit colour PNG; else None.

    Pillow keeps only the high byte of such files (12-bit data becomes 16 levels), so OpenCV reads them.
    """
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 26:
        return None
    bit_depth, colour_type = data[24], data[25]
    if bit_depth != 16 or colour_type not in DEEP_COLOUR_TYPES:
        return None
    import cv2

    pixels = cv2.imdecode(np.frombuffer(without_metadata(data), np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3:
        raise BadImage(
            f"corrupt 16-bit {DEEP_COLOUR_TYPES[colour_type]} PNG data (OpenCV cannot decode it); re-export "
            "the image"
        )
    return pixels[..., [2, 1, 0, 3][: pixels.shape[-1]]]  # OpenCV's BGR(A) → RGB(A)


def decode_grey(data: bytes, max_pixels: int) -> Image.Image:
    """PNG / JPEG bytes → upright `L` image: 16-bit data (grey or colour) scaled from its own range,
    colour by ITU-R 601 luma."""
    image = open_pillow(data, max_pixels, grey_draft=True)
    deep = deep_colour(data)
    if deep is None:
        return pillow_grey(image)
    grey = Image.fromarray(to_uint8(np.round(deep[..., :3] @ LUMA_WEIGHTS)))
    return _oriented_like(grey, data)


def decode_mask(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG / JPEG bytes → bool [H, W], upright: which pixels are lesion (module docstring), at full depth."""
    image = open_pillow(data, max_pixels)
    deep = deep_colour(data)
    if deep is None:
        return mask_pixels(image)
    marked = deep.any(axis=-1) if deep.shape[-1] == 3 else _alpha_or_colour(deep)
    upright_marked = np.asarray(_oriented_like(Image.fromarray(marked.astype(np.uint8)), data)) != 0
    return _refuse_full(upright_marked)


def _oriented_like(pixels: Image.Image, data: bytes) -> Image.Image:
    """`pixels` (decoded as stored) turned by the EXIF Orientation of the image file `data`."""
    with Image.open(io.BytesIO(without_metadata(data))) as stored:
        turn = orientation(stored)
    return pixels if turn == 1 else pixels.transpose(TRANSPOSES[turn])


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
    return _refuse_full(marked)


def _refuse_full(marked: np.ndarray) -> np.ndarray:
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
