"""Decoding one image file (PNG / JPEG via Pillow, DICOM via pydicom) into uint8 greyscale pixels.

Every function here works on one file and reports a bad file by raising `BadImage` with the rule it
broke; `renalmae.steps.ingest` collects those into one `DataError`. The functions are plain and
picklable so that the ingest step can run `decode_chunk` in a process pool.

DICOM: ultrasound is often a multi-frame cine clip; only the **first frame** is used (the study and
this pipeline work on still frames). RGB / YBR frames are converted to RGB by pydicom, PALETTE COLOR
through the palette (`apply_color_lut`), then to grey with ITU-R 601 luma, as Pillow's `convert("L")`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DICOM_SUFFIX = ".dcm"
PILLOW_FORMATS = ("JPEG", "PNG")
BINARY_LUT = [0] + [1] * 255
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


class BadImage(Exception):
    """A file that cannot become an image; the message is the rule it broke (no path: the caller adds it)."""


@dataclass(frozen=True)
class DecodeTask:
    """One file to decode: its image path, optional mask path and where it sits in the cache."""

    cache_index: int
    path: str
    mask: str | None


@dataclass(frozen=True)
class Decoded:
    """A decoded file: sha256 of the full-resolution pixels, original size, and cache-size arrays."""

    cache_index: int
    file_sha256: str
    pixel_sha256: str
    width: int
    height: int
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Failed:
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
    """Scale any integer or float greyscale array to uint8 (8-bit data is kept as is)."""
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


def decode_pillow(data: bytes, max_pixels: int) -> Image.Image:
    """PNG / JPEG bytes → full-resolution uint8 greyscale; the size is checked before decoding."""
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
        if image.format == "JPEG" and image.mode != "L":
            image.draft("L", image.size)  # libjpeg emits the luma plane directly: no colour conversion
        image.load()
    except Image.DecompressionBombError as error:
        raise BadImage(f"decompression bomb refused by Pillow ({error})") from None
    except UnidentifiedImageError:
        raise BadImage("not a readable PNG / JPEG image (corrupt or another format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImage(f"corrupt image data ({error})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(to_uint8(np.asarray(image)))
    return image if image.mode == "L" else image.convert("L")


def decode_dicom(data: bytes, max_pixels: int) -> np.ndarray:
    """DICOM bytes → uint8 greyscale of the first frame (see the module docstring)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, pixel_array

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise BadImage(f"not a readable DICOM file ({error})") from None
    if "PixelData" not in dataset:
        raise BadImage(
            "DICOM file has no pixel data (PixelData element missing): export the image, not a report"
        )
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns > max_pixels:
        raise BadImage(
            f"DICOM frame is {columns}x{rows} = {rows * columns:,} pixels, over data.max_image_pixels "
            f"({max_pixels:,}): shrink it or raise the limit"
        )
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    try:
        pixels = pixel_array(dataset, index=0 if frames > 1 else None)
    except Exception as error:  # pydicom raises many types for broken or unsupported pixel data
        raise BadImage(f"DICOM pixel data cannot be decoded ({type(error).__name__}: {error})") from None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
        entry_bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
        pixels = np.round(pixels * (255.0 / (2**entry_bits - 1))).astype(np.uint8)
    if pixels.ndim == 3:
        pixels = _rgb_to_grey(pixels)
    pixels = to_uint8(pixels)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


def decode_file(path: str | Path, max_pixels: int) -> tuple[Image.Image, str]:
    """Read and decode one image file → (greyscale `L` image at full resolution, sha256 of the file bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as error:
        raise BadImage(f"file cannot be read ({error.strerror})") from None
    if not data:
        raise BadImage("file is empty (0 bytes)")
    file_sha256 = hashlib.sha256(data).hexdigest()
    if path.suffix.lower() == DICOM_SUFFIX:
        return Image.fromarray(decode_dicom(data, max_pixels)), file_sha256
    return decode_pillow(data, max_pixels), file_sha256


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


def decode_task(task: DecodeTask, size: int, max_pixels: int) -> Decoded | Failed:
    """Decode one image (and its mask) to the cache size; a bad file becomes `Failed` with the rule."""
    try:
        image, file_sha256 = decode_file(task.path, max_pixels)
    except BadImage as error:
        return Failed(task.cache_index, task.path, str(error))
    if task.mask is None:
        mask = np.zeros((size, size), dtype=np.uint8)
    else:
        try:
            mask_image, _ = decode_file(task.mask, max_pixels)
        except BadImage as error:
            return Failed(task.cache_index, task.mask, f"mask of {task.path}: {error}")
        if mask_image.size != image.size:
            return Failed(
                task.cache_index,
                task.mask,
                f"mask is {mask_image.size[0]}x{mask_image.size[1]} but its image {task.path} is "
                f"{image.size[0]}x{image.size[1]}: a mask must match its image",
            )
        mask = to_square(mask_image.point(BINARY_LUT), size, nearest=True)
    return Decoded(
        cache_index=task.cache_index,
        file_sha256=file_sha256,
        pixel_sha256=pixel_sha256(image),
        width=image.size[0],
        height=image.size[1],
        image=to_square(image, size),
        mask=mask,
    )


def decode_chunk(tasks: list[DecodeTask], size: int, max_pixels: int) -> list[Decoded | Failed]:
    """`decode_task` over a chunk (one process-pool job, to amortise inter-process overhead)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    return [decode_task(task, size, max_pixels) for task in tasks]


def decode_all(tasks: list[DecodeTask], size: int, max_pixels: int, workers: int, progress: bool = True):
    """Yield `Decoded | Failed` for every task, in order, over `workers` processes (0 = in this process)."""
    from tqdm import tqdm

    decode = functools.partial(decode_chunk, size=size, max_pixels=max_pixels)
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
