"""DICOM via pydicom: one file's bytes → uint8 greyscale of its first frame, as a viewer shows it.

Ultrasound is often a multi-frame cine clip; only the **first frame** is used (the study and this
pipeline work on still frames). Every header value the decoder relies on is read through
`dicom_header.header_value`. Compressed transfer syntaxes are decoded by pydicom's plugins (RLE
natively, JPEG 2000 by Pillow, JPEG Lossless and JPEG-LS by GDCM). Monochrome data gets the Modality
LUT (rescale) and the first VOI window, as a viewer shows it (DICOM PS3.3 C.11.1, C.11.2); without a
window, >8-bit data is scaled from its own range. RGB / YBR frames are converted to RGB by pydicom,
PALETTE COLOR through its palette scaled by the bit depth the table actually holds (not what its
descriptor claims), then to grey with ITU-R 601 luma, as Pillow's `convert("L")`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from renalmae.data.decode.dicom_header import DicomImage, lut_descriptor
from renalmae.data.decode.pixels import BadImage, rgb_to_grey, to_uint8

DICOM_SUFFIX = ".dcm"
DICOM_MARKER = b"DICM"
PREAMBLE_BYTES = 128
DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: a DICOMDIR


def has_dicom_marker(data: bytes) -> bool:
    """True when `data` starts like a Part-10 file: `DICM` after the 128-byte preamble, or without it."""
    return data[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == DICOM_MARKER or data[:4] == DICOM_MARKER


def read_dataset(source: bytes | str | os.PathLike, header_only: bool = False) -> Any:
    """The pydicom dataset of a DICOM file as PACS export it: Part-10 with or without its 128-byte preamble,
    or a bare dataset without file meta (its transfer syntax then follows from how it was encoded).

    `source`: the file's bytes, or its path; `header_only` defers reading large values (the pixel data).
    Raises pydicom's `InvalidDicomError`, or `OSError` / `ValueError` / `EOFError`, for what is no DICOM.
    """
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if not isinstance(source, bytes):
        with open(source, "rb") as handle:
            if handle.read(4) == DICOM_MARKER:
                source = Path(source).read_bytes()
    if isinstance(source, bytes):
        if source[:4] == DICOM_MARKER:  # the preamble was dropped: pydicom expects it before the marker
            source = bytes(PREAMBLE_BYTES) + source
        source = io.BytesIO(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about each value it had to guess
        dataset = pydicom.dcmread(source, force=True, defer_size=1024 if header_only else None)
    if "TransferSyntaxUID" not in dataset.file_meta and dataset.original_encoding[0] is not None:
        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return dataset


def dicom_content(path: str | os.PathLike) -> str | None:
    """What a file holds by its content, read as DICOM: `"image"` (a dataset with pixel data), `"directory"`
    (a DICOMDIR, the index of a PACS export) or None (anything else)."""
    try:
        dataset = read_dataset(path, header_only=True)
    except Exception:  # a forced read of a file that is no DICOM fails in many ways
        return None
    if (
        dataset.file_meta.get("MediaStorageSOPClassUID") == DIRECTORY_STORAGE
        or "DirectoryRecordSequence" in dataset
    ):
        return "directory"
    return "image" if "PixelData" in dataset else None


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
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import pixel_array

    try:
        dataset = read_dataset(data)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as error:
        raise BadImage(f"not a readable DICOM file ({error}); re-export it from the scanner / PACS") from None
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
        return rgb_to_grey(_palette_rgb(pixels, dataset))
    if pixels.ndim == 3:
        return rgb_to_grey(pixels)
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
