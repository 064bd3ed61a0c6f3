"""Helpers of the ingest / validate tests: tiny PNG, JPEG and DICOM files, class trees, manifests, params."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from renalmae import testing

SIZE = 40


def noise(seed: int, size: int = SIZE, height: int | None = None) -> np.ndarray:
    """A textured greyscale image, different for every seed (so no two are duplicates)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height or size, size), dtype=np.uint8)


def gradient(size: int = SIZE) -> np.ndarray:
    return np.tile(np.linspace(0, 255, size).astype(np.uint8), (size, 1))


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def class_tree(root: Path, counts: dict[str, int], first_seed: int = 0) -> Path:
    """`root/<class>/<class>_<i>.png` with `counts[class]` distinct images per class."""
    seed = first_seed
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            write_png(root / label / f"{label}_{index:03d}.png", noise(seed))
            seed += 1
    return root


def write_manifest(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def manifest_dataset(root: Path, series: dict[str, tuple[str, int, int | None]], frames: int = 3) -> Path:
    """Images, masks and `root/manifest.csv`; `series` maps series id → (label, fold, first seed)."""
    rows = []
    for series_id, (label, fold, first_seed) in series.items():
        for frame in range(frames):
            image = write_png(root / "images" / f"{series_id}_{frame}.png", noise((first_seed or 0) + frame))
            mask_pixels = np.zeros((SIZE, SIZE), dtype=np.uint8)
            mask_pixels[10:20, 10:30] = 255
            mask = write_png(root / "masks" / f"{series_id}_{frame}.png", mask_pixels)
            rows.append(
                {
                    "image": str(image.relative_to(root)),
                    "mask": str(mask.relative_to(root)),
                    "label": label,
                    "fold": fold,
                    "series_id": series_id,
                }
            )
    return write_manifest(root / "manifest.csv", rows)


def write_jpeg(path: Path, pixels: np.ndarray, orientation: int | None = None) -> Path:
    """A JPEG (quality 95) of `pixels` as stored; `orientation` sets the EXIF Orientation tag (1-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif)
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 8,
    lut_bits: int = 16,
    lut_entry_scale: int = 257,
    **elements,
) -> Path:
    """A tiny ultrasound DICOM file; `pixels` None writes one without PixelData (a structured report, say).

    `elements` (keyword → value) are set last and written as given, however malformed (`'1A'` as
    NumberOfFrames, say): a PACS export is not validated either. PALETTE COLOR files get a reversed
    grey ramp as palette: 16-bit entries holding grey × `lut_entry_scale` (257: the full 16-bit range, 1: an
    8-bit table in 16-bit entries), under a descriptor that says `lut_bits`.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        UltrasoundImageStorage,
        UltrasoundMultiFrameImageStorage,
        generate_uid,
    )

    multi_frame = pixels is not None and pixels.ndim == (4 if photometric == "RGB" else 3)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage if multi_frame else UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "US"
    dataset.PatientID = "test-patient"
    if pixels is None:
        dataset.Rows, dataset.Columns = SIZE, SIZE
    else:
        dataset.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=bits_stored)
    if photometric == "PALETTE COLOR":
        # a grey ramp in reverse: index i shows grey 255 - i (16-bit LUT entries)
        ramp = ((255 - np.arange(256)) * lut_entry_scale).astype("<u2").tobytes()
        for colour in ("Red", "Green", "Blue"):
            setattr(dataset, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, lut_bits])
            setattr(dataset, f"{colour}PaletteColorLookupTableData", ramp)
    for keyword, value in elements.items():
        set_as_written(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def set_as_written(dataset, keyword: str, value) -> None:
    """Set element `keyword` to `value` unvalidated: text values go in as raw bytes, numbers as usual."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(tag_for_keyword(keyword))
    if not isinstance(value, str):
        setattr(dataset, keyword, value)
        return
    raw = value.encode("ascii")
    raw += b" " * (len(raw) % 2)  # DICOM values have even length
    dataset._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)


def tiny_params(source: str | Path, pool: list | None = None, classes: list[str] | None = None, **sections):
    """Params for a tiny ingest of `source`: decoding in-process, no progress bars, 2 folds, small class
    minimum (`renalmae.testing.tiny_params` with these data)."""
    classes = classes or ["normal", "utd"]
    data = {"source": str(source), "pool": [str(p) for p in pool or []], "classes": classes,
            "negative_class": classes[0]}  # fmt: skip
    return testing.tiny_params({"data": data, "validate": {"min_images_per_class": 2}}, **sections)


def screen_frame(seed: int = 0, width: int = 320, height: int = 240) -> tuple[np.ndarray, np.ndarray, tuple]:
    """An ultrasound screen export: a speckled fan-shaped sector on black, burned-in text in the corners,
    a grey-scale bar at the right edge and caliper marks inside the sector.

    Returns (image [H, W] uint8, lesion mask [H, W] 0/255 inside the sector, the sector's bounding box
    (x0, y0, x1, y1) with x1, y1 exclusive).
    """
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    apex_x, apex_y = width / 2, -30.0
    radius = np.hypot(xs - apex_x, ys - apex_y)
    angle = np.degrees(np.arctan2(xs - apex_x, ys - apex_y))
    sector = (radius > 60) & (radius < 250) & (np.abs(angle) < 32)
    speckle = rng.gamma(2.0, 45.0, size=(height, width)).clip(20, 255)
    image = np.where(sector, speckle, 0).astype(np.uint8)
    rows, columns = np.nonzero(sector)
    box = (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[120:150, 140:180] = 255
    screen = Image.fromarray(image)
    draw = ImageDraw.Draw(screen)
    draw.text((4, 4), "GE Voluson E10  RAB6-D", fill=255)
    draw.text((4, height - 14), "12.3 cm  24 Hz  MI 1.1  TIs 0.3", fill=230)
    draw.text((width - 70, 4), "Fetal Kidney", fill=255)
    for x, y in ((130, 100), (190, 160)):  # calipers
        draw.line((x - 4, y, x + 4, y), fill=255)
        draw.line((x, y - 4, x, y + 4), fill=255)
    bar = np.linspace(255, 0, 120).astype(np.uint8)[:, None].repeat(8, axis=1)
    screen.paste(Image.fromarray(bar), (width - 14, 60))
    return np.asarray(screen), mask, box


def phantom_frames(n: int, seed: int = 0, size: int = 96) -> tuple[np.ndarray, list[str]]:
    """`n` distinct renal phantom images (no two near-duplicates) and their labels."""
    from renalmae.data.phantom import generate_phantom

    phantom = generate_phantom(n, seed, size, 0.3, (0.5, 0.3, 0.2))
    return np.asarray(phantom.images), list(phantom.labels)


def near_copy(pixels: np.ndarray, path: Path) -> Path:
    """`pixels` re-exported as a scanner or PACS would: JPEG at quality 70, burned-in text, a caliper."""
    from PIL import ImageDraw

    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.text((2, 2), "12cm", fill=255)
    draw.line((40, 50, 48, 50), fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=70)
    return path


def png_bytes(
    pixels: np.ndarray, colour_type: int, bit_depth: int = 16, chunks: list[tuple[bytes, bytes]] = ()
) -> bytes:
    """A PNG of `pixels` ([H, W] or [H, W, C], unsigned, big-endian samples) written from the specification
    (PNG 11.2: IHDR, filter type 0 rows, IDAT, IEND), so decoders are tested against files no decoder under
    test wrote. `colour_type`: 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA; `chunks` (type, data) go before IDAT."""
    import struct
    import zlib

    height, width = pixels.shape[:2]
    samples = pixels.astype(">u2" if bit_depth == 16 else "u1").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    extra = b"".join(chunk(kind, data) for kind, data in chunks)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def exif_orientation_chunk(orientation: int) -> tuple[bytes, bytes]:
    """An `eXIf` chunk holding only the EXIF Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00")  # the chunk holds the TIFF structure only
