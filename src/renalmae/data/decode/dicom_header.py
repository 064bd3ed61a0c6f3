"""DICOM header values the decoder relies on, each read through `header_value`, so that a malformed one
makes the file a `BadImage` naming the element and its value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from renalmae.data.decode.pixels import BadImage

PHOTOMETRIC_INTERPRETATIONS = (
    "MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "YBR_ICT",
    "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422",
)  # fmt: skip
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
PALETTE_COLOURS = ("Red", "Green", "Blue")

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
            # 0 is invalid but written by some exporters; pydicom reads it as one frame (with a warning)
            frames=max(1, header_value(dataset, "NumberOfFrames", whole_number(0, empty=1), 1)),
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
        if self.photometric == "YBR_FULL_422":  # 2 samples per pixel stored (PS3.3 C.7.6.3.1.2), as pydicom
            needed = needed // 3 * 2  # `get_expected_length` counts them
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
