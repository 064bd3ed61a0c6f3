"""Images and DICOM as they arrive from scanners and PACS: each failure kind of issue 16 as named cases.

Each case ingests a file the way it arrives and checks what a user gets: the image as a viewer shows
it, the lesion where it was drawn, or the file named once in the bad-files report with its rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ingestkit import gradient, noise, tiny_params, write_dicom, write_jpeg, write_manifest, write_png
from PIL import Image

from renalmae.data.cache import load_ingested
from renalmae.data.decode import to_square
from renalmae.errors import DataError
from renalmae.steps import ingest

CACHE = 32  # tiny_params' data.image_size


def ingest_rows(tmp_path: Path, rows: list[dict], **data) -> object:
    """Ingest a manifest of `rows` (paths relative to tmp_path) and return the ingested data."""
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    return load_ingested(ingest.run(tiny_params(manifest, data=data), tmp_path / "ingested"))


def refused_rows(tmp_path: Path, rows: list[dict], **data) -> str:
    """Ingest expecting a DataError that writes nothing; return its message."""
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(DataError) as error:
        ingest.run(tiny_params(manifest, data=data), tmp_path / "ingested")
    assert not (tmp_path / "ingested").exists()
    return str(error.value)


def cached(pixels: np.ndarray, nearest: bool = False) -> np.ndarray:
    """What the cache holds for full-resolution greyscale `pixels` (pad square, resize)."""
    return to_square(Image.fromarray(pixels), CACHE, nearest=nearest)


def lesion(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A 0/1 mask `height` × `width` with ones in box (x0, y0, x1, y1)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1
    return mask


def named_once(message: str, name: str) -> bool:
    return message.count(name) == 1


# --- 1. orientation metadata ------------------------------------------------------------------------


def test_exif_rotated_jpeg_is_ingested_upright_and_its_mask_fits(tmp_path):
    stored = noise(1, size=80, height=120)  # portrait as stored; EXIF 6: rotate 90° clockwise to view
    image = write_jpeg(tmp_path / "phone.jpg", stored, orientation=6)
    as_stored = np.asarray(Image.open(image))
    upright = np.rot90(as_stored, k=-1)  # 120 wide, 80 high: what every viewer shows
    drawn = lesion(120, 80, (10, 5, 40, 25))  # drawn on the upright view
    write_png(tmp_path / "phone_mask.png", drawn * 255)
    data = ingest_rows(tmp_path, [{"image": "phone.jpg", "mask": "phone_mask.png", "label": "utd"}])
    row = data.table.iloc[0]
    assert (row["width"], row["height"]) == (120, 80)
    assert np.array_equal(data.images[0], cached(np.ascontiguousarray(upright)))
    assert np.array_equal(data.masks[0], cached(drawn, nearest=True))


def test_exif_orientation_of_a_png_and_of_its_mask_is_applied(tmp_path):
    upright = noise(2, size=60, height=30)
    drawn = lesion(60, 30, (5, 5, 20, 15))
    for name, pixels in (("scan.png", upright), ("scan_mask.png", drawn * 255)):
        stored = np.rot90(pixels, k=-1)  # EXIF 8: rotate 90° counter-clockwise to view
        exif = Image.Exif()
        exif[0x0112] = 8
        Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / name, exif=exif)
    data = ingest_rows(tmp_path, [{"image": "scan.png", "mask": "scan_mask.png", "label": "utd"}])
    assert (data.table.iloc[0]["width"], data.table.iloc[0]["height"]) == (60, 30)
    assert np.array_equal(data.images[0], cached(upright))
    assert np.array_equal(data.masks[0], cached(drawn, nearest=True))


# --- 2. masks in other modes ------------------------------------------------------------------------


def mask_case(tmp_path: Path, mask: Image.Image) -> list[dict]:
    write_png(tmp_path / "scan.png", noise(3))
    mask.save(tmp_path / "scan_mask.png")
    return [{"image": "scan.png", "mask": "scan_mask.png", "label": "utd"}]


def test_rgba_mask_drawn_in_the_alpha_channel_marks_only_the_lesion(tmp_path):
    drawn = lesion(40, 40, (8, 10, 30, 20))
    white = np.full((40, 40, 3), 255, dtype=np.uint8)  # constant colour: the alpha carries the mask
    rgba = Image.fromarray(np.dstack([white, drawn * 255]), mode="RGBA")
    data = ingest_rows(tmp_path, mask_case(tmp_path, rgba))
    assert np.array_equal(data.masks[0], cached(drawn, nearest=True))


def test_la_mask_drawn_in_the_alpha_channel_marks_the_lesion(tmp_path):
    drawn = lesion(40, 40, (4, 4, 12, 30))
    la = Image.fromarray(np.dstack([np.zeros((40, 40), np.uint8), drawn * 255]), mode="LA")
    data = ingest_rows(tmp_path, mask_case(tmp_path, la))
    assert np.array_equal(data.masks[0], cached(drawn, nearest=True))


def test_palette_mask_with_a_transparent_background_marks_its_visible_colour(tmp_path):
    drawn = lesion(40, 40, (20, 20, 36, 36))
    palette = Image.fromarray(drawn, mode="P")
    palette.putpalette([255, 255, 255, 255, 0, 0])  # index 0 white, index 1 red
    palette.info["transparency"] = 0  # ... and index 0 transparent: a drawing tool's export
    data = ingest_rows(tmp_path, mask_case(tmp_path, palette))
    assert np.array_equal(data.masks[0], cached(drawn, nearest=True))


def test_rgb_and_palette_masks_mark_their_non_black_pixels(tmp_path):
    drawn = lesion(40, 40, (2, 3, 9, 17))
    red = np.zeros((40, 40, 3), dtype=np.uint8)
    red[..., 0] = drawn * 200
    data = ingest_rows(tmp_path, mask_case(tmp_path, Image.fromarray(red, mode="RGB")))
    assert np.array_equal(data.masks[0], cached(drawn, nearest=True))


def test_mask_whose_alpha_and_colour_disagree_is_refused_by_name(tmp_path):
    left_half_visible = np.zeros((40, 40), np.uint8)
    left_half_visible[:, :20] = 255
    colour = np.zeros((40, 40, 3), np.uint8)
    colour[5:15, 25:35] = (0, 255, 0)  # a green patch where the alpha says nothing is drawn
    colour[25:35, 5:15] = (255, 0, 0)
    rgba = Image.fromarray(np.dstack([colour, left_half_visible]), mode="RGBA")
    message = refused_rows(tmp_path, mask_case(tmp_path, rgba))
    assert named_once(message, "scan_mask.png") and "ambiguous" in message


def test_mask_marking_every_pixel_as_lesion_is_refused(tmp_path):
    message = refused_rows(tmp_path, mask_case(tmp_path, Image.new("L", (40, 40), 255)))
    assert named_once(message, "scan_mask.png") and "every pixel" in message


# --- 3. malformed DICOM header values ---------------------------------------------------------------


def test_dicom_number_of_frames_not_a_number_is_a_bad_file_not_a_crash(tmp_path):
    write_png(tmp_path / "good.png", noise(4))
    write_dicom(tmp_path / "clip.dcm", np.stack([gradient(), gradient()]), NumberOfFrames="1A")
    rows = [{"image": "good.png", "label": "normal"}, {"image": "clip.dcm", "label": "utd"}]
    message = refused_rows(tmp_path, rows, decode_workers=2)  # the reported crash came from the pool
    assert message.startswith("1 bad input file")
    assert named_once(message, "clip.dcm") and "NumberOfFrames" in message and "'1A'" in message


# case → (elements as written, the element the report must name)
MALFORMED_HEADERS = {
    "rows": ({"Rows": 0}, "Rows"),
    "columns": ({"Columns": 41}, "Columns"),  # more than the pixel data holds
    "bits_allocated": ({"BitsAllocated": 12}, "BitsAllocated"),
    "bits_stored": ({"BitsStored": 20}, "BitsStored"),
    "samples_per_pixel": ({"SamplesPerPixel": 2}, "SamplesPerPixel"),
    "photometric_interpretation": ({"PhotometricInterpretation": "MONOCHROME3"}, "PhotometricInterpretation"),
    "window_center": ({"WindowCenter": "level", "WindowWidth": "200"}, "WindowCenter"),
    "window_width": ({"WindowCenter": "100", "WindowWidth": "0"}, "WindowWidth"),
    "rescale_slope": ({"RescaleSlope": "x2", "RescaleIntercept": "0"}, "RescaleSlope"),
}


@pytest.mark.parametrize(("elements", "keyword"), MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
def test_dicom_malformed_header_value_is_a_bad_file_naming_the_element(tmp_path, elements, keyword):
    write_dicom(tmp_path / "scan.dcm", gradient(), **elements)
    message = refused_rows(tmp_path, [{"image": "scan.dcm", "label": "utd"}])
    assert named_once(message, "scan.dcm") and "DICOM header" in message and keyword in message


def test_dicom_palette_descriptor_of_zero_bits_is_a_bad_file(tmp_path):
    write_dicom(tmp_path / "palette.dcm", 255 - gradient(), "PALETTE COLOR", lut_bits=0)
    message = refused_rows(tmp_path, [{"image": "palette.dcm", "label": "utd"}])
    assert named_once(message, "palette.dcm") and "RedPaletteColorLookupTableDescriptor" in message


def test_pydicom_example_with_a_bad_number_of_frames_is_a_bad_file():
    from pydicom.data import get_testdata_file

    from renalmae.data.decode import BadImage, decode_file

    path = get_testdata_file("badVR.dcm", download=False)  # NumberOfFrames '1A', shipped in the wheel
    with pytest.raises(BadImage, match="NumberOfFrames"):
        decode_file(path, max_pixels=1_000_000)


def test_dicom_window_is_applied_as_a_viewer_shows_it(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    stored = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 2).astype(np.uint16)  # 12-bit data
    write_dicom(tmp_path / "ct_like.dcm", stored, bits_stored=12, WindowCenter="1600", WindowWidth="800")
    data = ingest_rows(tmp_path, [{"image": "ct_like.dcm", "label": "utd"}])
    reference = Dataset()  # pydicom's windowing (PS3.3 C.11.2.1.2), output range 0..255 (8 bits stored)
    reference.PhotometricInterpretation = "MONOCHROME2"
    reference.BitsStored, reference.PixelRepresentation = 8, 0
    reference.WindowCenter, reference.WindowWidth = 1600, 800
    expected = np.round(apply_windowing(stored.astype(float), reference)).astype(np.uint8)
    assert np.array_equal(data.images[0], cached(expected))


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(100.0, 1.0), (128.0, 256.0), (40.5, 79.0), (300.0, 50.0)])
def test_voi_window_matches_pydicom_apply_windowing(function, center, width):
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    from renalmae.data.decode import apply_window

    if function != "LINEAR" and width == 1.0:
        width = 0.5  # LINEAR_EXACT and SIGMOID take any width > 0
    values = np.linspace(-50, 500, 1101)
    reference = Dataset()  # 8 bits stored, unsigned: pydicom's output range is 0..255 like ours
    reference.PhotometricInterpretation, reference.VOILUTFunction = "MONOCHROME2", function
    reference.BitsStored, reference.PixelRepresentation = 8, 0
    reference.WindowCenter, reference.WindowWidth = center, width
    expected = apply_windowing(values, reference)
    assert np.abs(apply_window(values, center, width, function).astype(float) - expected).max() <= 0.5 + 1e-9


# --- 4. palette LUT depth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("descriptor_bits", "entry_scale", "tolerance"),
    [(8, 256, 1), (16, 1, 0)],
    ids=["16-bit entries under an 8-bit descriptor", "8-bit values in 16-bit entries"],
)
def test_palette_lut_is_scaled_by_the_range_its_table_holds(
    tmp_path, descriptor_bits, entry_scale, tolerance
):
    pixels = gradient()
    write_png(tmp_path / "reference.png", pixels)
    write_dicom(
        tmp_path / "palette.dcm", 255 - pixels, "PALETTE COLOR", lut_bits=descriptor_bits,
        lut_entry_scale=entry_scale,
    )  # fmt: skip
    rows = [{"image": "reference.png", "label": "normal"}, {"image": "palette.dcm", "label": "utd"}]
    data = ingest_rows(tmp_path, rows)
    # 16-bit entries holding grey × 256 reach 65280 of 65535: the top grey is 254.0, within one level
    assert np.abs(data.images[1].astype(int) - data.images[0]).max() <= tolerance


# --- 5. compressed transfer syntaxes ----------------------------------------------------------------

# (compressed file, reference holding the same pixels uncompressed or losslessly), both in pydicom's wheel
COMPRESSED = {
    "RLE Lossless": ("MR_small_RLE.dcm", "MR_small.dcm"),
    "JPEG-LS Lossless": ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    "JPEG 2000 Lossless": ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    "JPEG Lossless SV1": ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),
}


def pydicom_example(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)  # only files inside the wheel: nothing is downloaded
    assert path is not None, f"{name} is not in the installed pydicom wheel"
    return Path(path)


@pytest.mark.parametrize(("compressed", "reference"), COMPRESSED.values(), ids=COMPRESSED.keys())
def test_compressed_dicom_decodes_like_its_uncompressed_reference(tmp_path, compressed, reference):
    rows = []
    for name in (compressed, reference):
        (tmp_path / name).write_bytes(pydicom_example(name).read_bytes())
        rows.append({"image": name, "label": "utd"})
    data = ingest_rows(tmp_path, rows)
    assert data.images[0].std() > 10, "a real image, not a blank"
    assert np.array_equal(data.images[0], data.images[1])
    assert data.table["sha256"].iloc[0] == data.table["sha256"].iloc[1]


def test_near_lossless_jpeg_ls_decodes_within_its_error_bound(tmp_path):
    rows = []
    for name in ("SC_rgb_jls_lossy_line.dcm", "SC_rgb_rle.dcm", "JPEGLSNearLossless_08.dcm"):
        (tmp_path / name).write_bytes(pydicom_example(name).read_bytes())
        rows.append({"image": name, "label": "utd"})
    data = ingest_rows(tmp_path, rows)
    assert np.abs(data.images[0].astype(int) - data.images[1]).max() <= 3
    assert data.images[2].std() > 10


def test_unsupported_transfer_syntax_is_named_with_the_fix(tmp_path):
    import pydicom
    from pydicom.uid import HTJ2KLossless

    dataset = pydicom.dcmread(pydicom_example("MR_small_jp2klossless.dcm"))
    dataset.file_meta.TransferSyntaxUID = HTJ2KLossless  # no installed plugin decodes HTJ2K
    dataset.save_as(tmp_path / "htj2k.dcm")
    message = refused_rows(tmp_path, [{"image": "htj2k.dcm", "label": "utd"}])
    assert named_once(message, "htj2k.dcm")
    assert "High-Throughput JPEG 2000" in message and "gdcmconv --raw" in message
