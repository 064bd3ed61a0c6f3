"""Decoding one image file (PNG / JPEG via Pillow, DICOM via pydicom) into uint8 greyscale as viewers show it.

Every function here works on one file and reports a bad file by raising `BadImage` with the rule it
broke; `renalmae.steps.ingest` collects those into one `DataError`. The functions are plain and
picklable so that the ingest step can run `decode_chunk` in a process pool. `prepare_image_file` is
the one way to turn a file into model input outside ingest (predict, explain): the same code, the
same `Preparation`, so a served model sees what it was trained on.

Orientation: an EXIF Orientation tag (JPEG, PNG) is applied to images and masks alike, so both are
upright as any viewer shows them and a mask drawn on the upright view fits its image.

Masks: which pixels are lesion depends on the mode. Greyscale, 16-bit and 1-bit masks: non-zero.
RGB: non-black. With an alpha channel (RGBA, LA, or a palette with transparency): the alpha carries
the mask when the visible pixels all have one colour (a drawing tool's export); when the colours vary
too they must mark the same pixels as the alpha, else the mask is ambiguous and refused. A mask that
marks every pixel is refused: its background is not 0 or transparent.

Crop (`data.crop`, optional): screen exports carry burned-in text, calipers, colour bars and a black
frame around the fan; `auto` crops to the imaging sector (`sector_box`), a fixed `x0,y0,x1,y1` to that
box. The box is cut from the upright image and its mask alike, before padding and resizing.

DICOM: ultrasound is often a multi-frame cine clip; only the **first frame** is used (the study and
this pipeline work on still frames). Every header value the decoder relies on is read through
`header_value`, so a malformed one makes the file a `BadImage` naming the element and its value.
Compressed transfer syntaxes are decoded by pydicom's plugins (RLE natively, JPEG 2000 by Pillow,
JPEG Lossless and JPEG-LS by GDCM). Monochrome data gets the Modality LUT (rescale) and the first VOI
window, as a viewer shows it (DICOM PS3.3 C.11.1, C.11.2); without a window, >8-bit data is scaled
from its own range. RGB / YBR frames are converted to RGB by pydicom, PALETTE COLOR through its
palette scaled by the bit depth the table actually holds (not what its descriptor claims), then to
grey with ITU-R 601 luma, as Pillow's `convert("L")`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import io
import os
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from renalmae.data.near_duplicates import perceptual_hash
from renalmae.errors import DataError
from renalmae.params import DataParams

DICOM_SUFFIX = ".dcm"
PILLOW_FORMATS = ("JPEG", "PNG")
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
DEFAULT_MAX_IMAGE_PIXELS: int = DataParams.model_fields["max_image_pixels"].default
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
PHOTOMETRIC_INTERPRETATIONS = (
    "MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT",
    "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422",
)  # fmt: skip
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
PALETTE_COLOURS = ("Red", "Green", "Blue")


class BadImage(Exception):
    """A file that cannot become an image; the message is the rule it broke (no path: the caller adds it)."""


@dataclass(frozen=True)
class Preparation:
    """How a file becomes a cache image: working size (pixels, square), decompression-bomb guard, crop.

    Ingest builds it from params `data`; predict and explain from the model's recorded `image_size` and
    `crop`. `crop` is `none`, `auto` or `x0,y0,x1,y1` (see `DataParams.crop`). `perceptual_hash`: ingest
    also hashes each image for the near-duplicate search (off when `data.near_duplicate_bits` is null).
    """

    size: int
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    crop: str = "none"
    perceptual_hash: bool = False

    @classmethod
    def from_data(cls, data: DataParams) -> Preparation:
        return cls(
            size=data.image_size,
            max_pixels=data.max_image_pixels,
            crop=data.crop,
            perceptual_hash=data.near_duplicate_bits is not None,
        )


@dataclass(frozen=True)
class DecodeTask:
    """One file to decode: its image path, optional mask path and where it sits in the cache."""

    cache_index: int
    path: str
    mask: str | None


@dataclass(frozen=True)
class Decoded:
    """A decoded file: sha256 and perceptual hash of the cropped full-resolution pixels, upright size, crop
    box, cache-size arrays."""

    cache_index: int
    file_sha256: str
    pixel_sha256: str
    width: int
    height: int
    crop: str | None
    phash: str | None
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Failed:
    """A file that broke a rule: `path` is the bad file (an image or its mask), `reason` the rule."""

    cache_index: int
    path: str
    reason: str


def pixel_sha256(pixels: np.ndarray | Image.Image) -> str:
    """sha256 of a greyscale image's pixels and shape (so a re-encoded copy hashes the same)."""
    if isinstance(pixels, Image.Image):
        (width, height), raw = pixels.size, pixels.tobytes()
    else:
        (height, width), raw = pixels.shape, np.ascontiguousarray(pixels).tobytes()
    digest = hashlib.sha256(f"{height}x{width}:".encode())
    digest.update(raw)
    return digest.hexdigest()


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale any integer or float greyscale array to uint8 from its own range (8-bit data is kept as is)."""
    if pixels.dtype == np.uint8:
        return pixels
    pixels = pixels.astype(np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)


def _rgb_to_grey(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.round(pixels[..., :3] @ LUMA_WEIGHTS).astype(np.uint8)
    return to_uint8(pixels[..., :3] @ LUMA_WEIGHTS)


# --- PNG / JPEG -------------------------------------------------------------------------------------


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


# --- DICOM ------------------------------------------------------------------------------------------

_REQUIRED = object()


def header_value(dataset: Any, keyword: str, parse: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
    """`parse(value)` of the DICOM element `keyword`; missing → `default`; malformed → `BadImage` naming it.

    `parse` raises ValueError / TypeError with what was expected (e.g. "a whole number >= 1").
    """
    if keyword not in dataset:
        if default is _REQUIRED:
            raise BadImage(f"DICOM header {keyword} is missing; the file cannot be decoded without it")
        return default
    try:
        return parse(dataset[keyword].value)
    except (ValueError, TypeError, OverflowError, IndexError, KeyError) as error:
        tag, shown = _as_written(dataset, keyword)
        raise BadImage(
            f"DICOM header {keyword} {tag} is {shown}, not {error}; "
            "fix the header or re-export the file from the scanner / PACS"
        ) from None


def _as_written(dataset: Any, keyword: str) -> tuple[Any, str]:
    """(tag, value as written in the file) of an element, without converting it (which may fail again)."""
    element = dataset.get_item(keyword)
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip(" \x00")
    return element.tag, repr(value)


def _first(value: Any) -> Any:
    """The first item of a multi-valued element (VM > 1, a pydicom `MultiValue`), else the value itself."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return value[0]
    return value


def whole_number(low: int, high: int | None = None, empty: int | None = None) -> Callable[[Any], int]:
    """Parser of an integer element in [low, high]; an empty element is `empty` (None: refused)."""
    expected = f"a whole number >= {low}" if high is None else f"a whole number in {low}..{high}"

    def parse(value: Any) -> int:
        value = _first(value)
        if value in (None, "") and empty is not None:
            return empty
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(expected) from None
        if not number.is_integer() or number < low or (high is not None and number > high):
            raise ValueError(expected)
        return int(number)

    return parse


def one_of(allowed: tuple[Any, ...]) -> Callable[[Any], Any]:
    """Parser of an element that must hold one of `allowed` (text compared stripped, upper case)."""

    def parse(value: Any) -> Any:
        value = _first(value)
        value = value.strip().upper() if isinstance(value, str) else value
        if value not in allowed:
            raise ValueError(f"one of {', '.join(map(str, allowed))}")
        return value

    return parse


def decimal(at_least: float | None = None, above: float | None = None) -> Callable[[Any], float]:
    """Parser of a decimal element, optionally bounded below (`at_least` inclusive, `above` exclusive)."""
    expected = "a decimal number" + (
        f" >= {at_least:g}" if at_least is not None else f" > {above:g}" if above is not None else ""
    )

    def parse(value: Any) -> float:
        try:
            number = float(str(_first(value)).strip())
        except ValueError:
            raise ValueError(expected) from None
        too_low = (at_least is not None and number < at_least) or (above is not None and number <= above)
        if not np.isfinite(number) or too_low:
            raise ValueError(expected)
        return number

    return parse


def lut_descriptor(value: Any) -> tuple[int, int, int]:
    """A LUT descriptor (entries, first mapped value, bits per entry) with 0 entries meaning 65,536."""
    try:
        entries, first_mapped, bits = (int(item) for item in value)
    except (TypeError, ValueError):
        raise ValueError("three numbers: entries, first mapped value, bits (8 or 16)") from None
    if bits not in (8, 16) or not 0 <= entries <= 65535:
        raise ValueError("three numbers: entries (0..65535), first mapped value, bits (8 or 16)")
    return entries or 65536, first_mapped, bits


@dataclass(frozen=True)
class DicomImage:
    """The header values the decoder relies on, each read once through `header_value`."""

    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    window: tuple[float, float, str] | None
    rescale: tuple[float, float]

    @classmethod
    def read(cls, dataset: Any) -> DicomImage:
        bits_allocated = header_value(dataset, "BitsAllocated", one_of((1, 8, 16, 32, 64)))
        photometric = header_value(
            dataset, "PhotometricInterpretation", one_of(PHOTOMETRIC_INTERPRETATIONS), "MONOCHROME2"
        )
        image = cls(
            rows=header_value(dataset, "Rows", whole_number(1)),
            columns=header_value(dataset, "Columns", whole_number(1)),
            frames=header_value(dataset, "NumberOfFrames", whole_number(1, empty=1), 1),
            samples=header_value(dataset, "SamplesPerPixel", one_of((1, 3)), 1),
            bits_allocated=bits_allocated,
            bits_stored=header_value(dataset, "BitsStored", whole_number(1, bits_allocated), bits_allocated),
            photometric=photometric,
            window=_window(dataset) if photometric.startswith("MONOCHROME") else None,
            rescale=(
                header_value(dataset, "RescaleSlope", decimal(), 1.0),
                header_value(dataset, "RescaleIntercept", decimal(), 0.0),
            ),
        )
        header_value(dataset, "PixelRepresentation", one_of((0, 1)), 0)
        if image.samples == 3:
            header_value(dataset, "PlanarConfiguration", one_of((0, 1)), 0)
        if photometric == "PALETTE COLOR":
            for colour in PALETTE_COLOURS:
                header_value(dataset, f"{colour}PaletteColorLookupTableDescriptor", lut_descriptor)
        return image

    def check_size(self, dataset: Any, max_pixels: int) -> None:
        """Refuse a frame over the pixel limit, and native pixel data shorter than the header says."""
        if self.rows * self.columns > max_pixels:
            raise BadImage(
                f"DICOM frame is {self.columns}x{self.rows} = {self.rows * self.columns:,} pixels, over "
                f"data.max_image_pixels ({max_pixels:,}): shrink it or raise the limit"
            )
        syntax = dataset.file_meta.get("TransferSyntaxUID", None)
        if syntax is None or syntax.is_compressed:
            return
        needed = -(-self.rows * self.columns * self.samples * self.frames * self.bits_allocated // 8)
        held = len(dataset.PixelData)
        if held < needed:
            raise BadImage(
                f"DICOM header Rows x Columns x SamplesPerPixel x NumberOfFrames = {self.rows} x "
                f"{self.columns} x {self.samples} x {self.frames} at BitsAllocated {self.bits_allocated} "
                f"needs {needed:,} bytes of pixel data but the file holds {held:,}: the header does not "
                "describe the pixels; re-export the file"
            )


def _window(dataset: Any) -> tuple[float, float, str] | None:
    """(center, width, function) of the first VOI window, or None when the file has none."""
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return None
    function = header_value(dataset, "VOILUTFunction", one_of(VOI_FUNCTIONS), "LINEAR")
    center = header_value(dataset, "WindowCenter", decimal())
    width_rule = decimal(at_least=1.0) if function == "LINEAR" else decimal(above=0.0)
    return center, header_value(dataset, "WindowWidth", width_rule), function


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """VOI windowing of modality values to uint8 0..255 (DICOM PS3.3 C.11.2.1.2 LINEAR, C.11.2.1.3
    LINEAR_EXACT and SIGMOID, with output range 0..255); tested against pydicom's `apply_windowing`."""
    values = values.astype(np.float64)
    if function == "SIGMOID":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif function == "LINEAR_EXACT":
        scaled = np.clip((values - center) / width + 0.5, 0.0, 1.0)
    elif width == 1:
        scaled = (values > center - 0.5).astype(np.float64)
    else:
        scaled = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return np.round(scaled * 255.0).astype(np.uint8)


def decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """DICOM bytes → uint8 greyscale of the first frame (see the module docstring)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import pixel_array

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise BadImage(f"not a readable DICOM file ({error})") from None
    if "PixelData" not in dataset:
        raise BadImage(
            "DICOM file has no pixel data (PixelData element missing): export the image, not a report"
        )
    header = DicomImage.read(dataset)
    header.check_size(dataset, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about values already checked above
            pixels = pixel_array(dataset, index=0 if header.frames > 1 else None)
    except Exception as error:  # pydicom and its plugins raise many types for broken or unsupported data
        raise BadImage(_undecodable(dataset, error)) from None
    if header.photometric == "PALETTE COLOR":
        return _rgb_to_grey(_palette_rgb(pixels, dataset))
    if pixels.ndim == 3:
        return _rgb_to_grey(pixels)
    grey = _monochrome_grey(pixels, header)
    return 255 - grey if header.photometric == "MONOCHROME1" else grey


def _undecodable(dataset: Any, error: Exception) -> str:
    syntax = dataset.file_meta.get("TransferSyntaxUID", None)
    text = " ".join(str(error).split())[:400]
    if syntax is not None and syntax.is_compressed:
        return (
            f"DICOM pixel data in transfer syntax '{syntax.name}' cannot be decoded ({type(error).__name__}: "
            f"{text}); convert the file to an uncompressed syntax (`gdcmconv --raw in.dcm out.dcm`, or "
            "DCMTK `dcmdjpeg`) and ingest that"
        )
    return f"DICOM pixel data cannot be decoded ({type(error).__name__}: {text})"


def _monochrome_grey(pixels: np.ndarray, header: DicomImage) -> np.ndarray:
    """Modality LUT (rescale), then the VOI window when there is one, else the data's own range."""
    slope, intercept = header.rescale
    values = pixels if (slope, intercept) == (1.0, 0.0) else pixels * slope + intercept
    if header.window is not None:
        return apply_window(values, *header.window)
    return to_uint8(values)


def _palette_rgb(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    """PALETTE COLOR indices → uint8 RGB, scaled by the depth the table actually holds, clipped."""
    from pydicom.pixels import apply_color_lut

    entries, first_mapped, _ = lut_descriptor(dataset.RedPaletteColorLookupTableDescriptor)
    try:
        rgb = apply_color_lut(pixels, dataset)
        table = apply_color_lut(np.arange(first_mapped, first_mapped + entries), dataset)
    except Exception as error:  # a palette whose data does not match its descriptor
        raise BadImage(
            f"DICOM palette (RedPaletteColorLookupTableDescriptor / ...Data) cannot be applied "
            f"({type(error).__name__}: {error}); re-export the file"
        ) from None
    depth = 8 if table.max() <= 255 else 16  # 8-bit tables are often stored in 16-bit entries
    return np.clip(np.round(rgb * (255.0 / (2**depth - 1))), 0, 255).astype(np.uint8)


# --- the imaging sector -----------------------------------------------------------------------------

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


# --- one file, one task -----------------------------------------------------------------------------


def read_file(path: str | os.PathLike) -> tuple[bytes, str]:
    """The bytes of an image file and their sha256; a missing, unreadable or empty file is a `BadImage`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as error:
        raise BadImage(f"file cannot be read ({error.strerror})") from None
    if not data:
        raise BadImage("file is empty (0 bytes)")
    return data, hashlib.sha256(data).hexdigest()


def decode_file(path: str | os.PathLike, max_pixels: int) -> tuple[Image.Image, str]:
    """Read and decode one image file → (upright greyscale `L` image at full resolution, sha256 of bytes)."""
    data, file_sha256 = read_file(path)
    if Path(path).suffix.lower() == DICOM_SUFFIX:
        return Image.fromarray(decode_dicom(data, max_pixels)), file_sha256
    return pillow_grey(open_pillow(data, max_pixels, grey_draft=True)), file_sha256


def decode_mask_file(path: str | os.PathLike, max_pixels: int) -> Image.Image:
    """Read and decode one mask file → upright `L` image of 0 (background) / 1 (lesion) at full resolution."""
    data, _ = read_file(path)
    if Path(path).suffix.lower() == DICOM_SUFFIX:
        marked = decode_dicom(data, max_pixels) != 0
        if marked.all():
            raise BadImage("mask marks every pixel as lesion: its background must be 0")
    else:
        marked = mask_pixels(open_pillow(data, max_pixels))
    return Image.fromarray(marked.astype(np.uint8))


def to_square(image: Image.Image, size: int, nearest: bool = False) -> np.ndarray:
    """Pad to a centred square with zeros (keeps the anatomy's aspect), then resize to `size` → uint8 array.

    Images use an antialiased bilinear filter; masks use nearest neighbour so they stay 0/1.
    """
    width, height = image.size
    if width != height:
        side = max(width, height)
        padded = Image.new("L", (side, side), 0)
        padded.paste(image, ((side - width) // 2, (side - height) // 2))
        image = padded
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
    return np.asarray(image)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode one image file as ingest does → uint8 greyscale [H, W] at full resolution, upright.

    Raises `DataError` naming the file and the rule it broke.
    """
    try:
        image, _ = decode_file(path, max_pixels)
    except BadImage as error:
        raise DataError(f"{path}: {error}; pass a readable PNG, JPEG or DICOM image") from None
    return np.asarray(image)


def prepare_pixels(pixels: np.ndarray, preparation: Preparation) -> np.ndarray:
    """uint8 greyscale [H, W] of any size → the cache image [size, size] ingest would make of it (crop,
    pad square, resize). Raises `DataError` when a fixed crop box does not fit."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    try:
        box = crop_box(image, preparation.crop)
    except BadImage as error:
        raise DataError(str(error)) from None
    return to_square(image if box is None else image.crop(box), preparation.size)


def prepare_image_file(path: str | os.PathLike, preparation: Preparation) -> np.ndarray:
    """Decode one image file exactly as ingest does → uint8 [size, size], whatever its size, mode or format.

    The single "decode like ingest" path for predict and explain. Raises `DataError` naming the file
    and the rule it broke.
    """
    return prepare_pixels(read_image(path, preparation.max_pixels), preparation)


def decode_task(task: DecodeTask, preparation: Preparation) -> Decoded | Failed:
    """Decode one image (and its mask), crop both alike, resize to the cache size; a bad file → `Failed`."""
    size, max_pixels = preparation.size, preparation.max_pixels
    try:
        image, file_sha256 = decode_file(task.path, max_pixels)
        box = crop_box(image, preparation.crop)
    except BadImage as error:
        return Failed(task.cache_index, task.path, str(error))
    width, height = image.size
    if box is not None:
        image = image.crop(box)
    if task.mask is None:
        mask = np.zeros((size, size), dtype=np.uint8)
    else:
        try:
            mask_image = decode_mask_file(task.mask, max_pixels)
        except BadImage as error:
            return Failed(task.cache_index, task.mask, f"mask of {task.path}: {error}")
        if mask_image.size != (width, height):
            return Failed(
                task.cache_index,
                task.mask,
                f"mask is {mask_image.size[0]}x{mask_image.size[1]} but its image {task.path} is "
                f"{width}x{height} (both upright): a mask must match its image",
            )
        mask = to_square(mask_image if box is None else mask_image.crop(box), size, nearest=True)
    return Decoded(
        cache_index=task.cache_index,
        file_sha256=file_sha256,
        pixel_sha256=pixel_sha256(image),
        width=width,
        height=height,
        crop=None if box is None else ",".join(map(str, box)),
        phash=perceptual_hash(image) if preparation.perceptual_hash else None,
        image=to_square(image, size),
        mask=mask,
    )


def decode_chunk(tasks: list[DecodeTask], preparation: Preparation) -> list[Decoded | Failed]:
    """`decode_task` over a chunk (one process-pool job, to amortise inter-process overhead)."""
    Image.MAX_IMAGE_PIXELS = preparation.max_pixels
    return [decode_task(task, preparation) for task in tasks]


def decode_all(tasks: list[DecodeTask], preparation: Preparation, workers: int, progress: bool = True):
    """Yield `Decoded | Failed` for every task, in order, over `workers` processes (0 = in this process)."""
    from tqdm import tqdm

    decode = functools.partial(decode_chunk, preparation=preparation)
    chunk_size = max(8, min(128, len(tasks) // max(1, workers * 8)))
    chunks = [tasks[start : start + chunk_size] for start in range(0, len(tasks), chunk_size)]
    with tqdm(total=len(tasks), unit="img", desc="decode", disable=not progress or not tasks) as bar:
        if workers == 0:
            results = map(decode, chunks)
            for chunk_results in results:
                bar.update(len(chunk_results))
                yield from chunk_results
            return
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as executor:
            for chunk_results in executor.map(decode, chunks):
                bar.update(len(chunk_results))
                yield from chunk_results
