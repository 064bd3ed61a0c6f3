"""One file, one task: read an image (and its mask), decode it by format, crop, pad square, resize.

Every function here works on one file and reports a bad file by raising `BadImage` with the rule it
broke; `renalmae.steps.ingest` collects those into one `DataError`. The functions are plain and
picklable so that the ingest step can run `decode_chunk` in a process pool. `prepare_image_file` is
the one way to turn a file into model input outside ingest (predict, explain): the same code, the
same `Preparation`, so a served model sees what it was trained on.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from renalmae.data.decode.dicom import DICOM_SUFFIX, decode_dicom, dicom_content, has_dicom_marker
from renalmae.data.decode.pillow import PILLOW_SIGNATURES, decode_grey, decode_mask
from renalmae.data.decode.pixels import DEFAULT_MAX_IMAGE_PIXELS, BadImage, pixel_sha256
from renalmae.data.decode.sector import crop_box
from renalmae.data.near_duplicates import perceptual_hash
from renalmae.errors import DataError
from renalmae.params import DataParams


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


def is_dicom(path: str | os.PathLike, data: bytes) -> bool:
    """Whether a file is DICOM, by its content: the `DICM` marker, else a PNG / JPEG signature says no, else
    a forced pydicom read that yields pixel data (a bare dataset); a `.dcm` name counts as DICOM."""
    if has_dicom_marker(data):
        return True
    if data.startswith(PILLOW_SIGNATURES):
        return False
    return Path(path).suffix.lower() == DICOM_SUFFIX or dicom_content(path) == "image"


def decode_file(path: str | os.PathLike, max_pixels: int) -> tuple[Image.Image, str]:
    """Read and decode one image file → (upright greyscale `L` image at full resolution, sha256 of bytes).

    The decoder is chosen by content, not by the name: PACS exports often have none (`IM00000`).
    """
    data, file_sha256 = read_file(path)
    if is_dicom(path, data):
        return Image.fromarray(decode_dicom(data, max_pixels)), file_sha256
    return decode_grey(data, max_pixels), file_sha256


def decode_mask_file(path: str | os.PathLike, max_pixels: int) -> Image.Image:
    """Read and decode one mask file → upright `L` image of 0 (background) / 1 (lesion) at full resolution."""
    data, _ = read_file(path)
    if is_dicom(path, data):
        marked = decode_dicom(data, max_pixels) != 0
        if marked.all():
            raise BadImage("mask marks every pixel as lesion: its background must be 0")
    else:
        marked = decode_mask(data, max_pixels)
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
