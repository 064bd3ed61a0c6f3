"""16-bit colour PNGs and DICOM as PACS export it (issue 26, kinds 4 and 5): each case decodes the file a
user would have and checks the grey levels a viewer shows, or the one clear error naming the file."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from ingestkit import exif_orientation_chunk, gradient, noise, png_bytes, tiny_params, write_dicom, write_png
from PIL import Image, ImageOps

from renalmae.data.cache import load_ingested
from renalmae.data.decode import (
    BadImage,
    Preparation,
    decode_file,
    decode_mask_file,
    prepare_image_file,
    to_uint8,
)
from renalmae.data.sources import list_source
from renalmae.errors import DataError
from renalmae.steps import ingest

MAX_PIXELS = 10_000_000
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's convert("L")
COLOUR_TYPES = {"RGB48": 2, "grey+alpha": 4, "RGBA64": 6}


def decoded(path: Path) -> np.ndarray:
    return np.asarray(decode_file(path, MAX_PIXELS)[0])


def twelve_bit(seed: int, shape=(24, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=shape, dtype=np.uint16)


def as_colour(grey: np.ndarray, colour_type: int, alpha: int = 65535) -> np.ndarray:
    """`grey` in every colour channel of a PNG colour type, with a constant alpha where it has one."""
    channels = {
        2: [grey] * 3,
        4: [grey, np.full_like(grey, alpha)],
        6: [grey] * 3 + [np.full_like(grey, alpha)],
    }
    return np.stack(channels[colour_type], axis=-1)


# --- 4. 16-bit colour -------------------------------------------------------------------------------


@pytest.mark.parametrize("colour_type", COLOUR_TYPES.values(), ids=COLOUR_TYPES.keys())
def test_16_bit_colour_png_of_12_bit_data_is_rescaled_like_16_bit_grey(tmp_path, colour_type):
    grey = twelve_bit(1)
    (tmp_path / "grey.png").write_bytes(png_bytes(grey, 0))
    (tmp_path / "colour.png").write_bytes(png_bytes(as_colour(grey, colour_type), colour_type))
    assert np.array_equal(decoded(tmp_path / "colour.png"), decoded(tmp_path / "grey.png"))
    assert np.array_equal(decoded(tmp_path / "grey.png"), to_uint8(grey))
    assert len(np.unique(decoded(tmp_path / "colour.png"))) > 200  # not the 16 levels of the high byte


def test_16_bit_colour_png_is_ingested_at_full_depth(tmp_path):
    grey = twelve_bit(2)
    (tmp_path / "rgb48.png").write_bytes(png_bytes(as_colour(grey, 2), 2))
    write_png(tmp_path / "other.png", noise(3))
    (tmp_path / "m.csv").write_text("image,label\nrgb48.png,normal\nother.png,utd\n")
    data = load_ingested(ingest.run(tiny_params(tmp_path / "m.csv"), tmp_path / "ingested"))
    assert data.images[0].std() > 40  # a 12-bit ramp of noise spread over 0..255, not 0..15


def test_16_bit_colour_png_is_grey_by_luma_at_full_depth(tmp_path):
    rgb = np.stack([twelve_bit(seed) for seed in (4, 5, 6)], axis=-1)
    (tmp_path / "rgb48.png").write_bytes(png_bytes(rgb, 2))
    assert np.array_equal(decoded(tmp_path / "rgb48.png"), to_uint8(np.round(rgb @ LUMA)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_colour_png_is_turned_upright_like_an_8_bit_one(tmp_path, orientation):
    grey = twelve_bit(7, shape=(20, 32))
    chunk = [exif_orientation_chunk(orientation)]
    (tmp_path / "deep.png").write_bytes(png_bytes(as_colour(grey, 6), 6, chunks=chunk))
    eight_bit = to_uint8(grey)
    (tmp_path / "grey.png").write_bytes(png_bytes(eight_bit, 0, bit_depth=8, chunks=chunk))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "grey.png")))
    assert np.array_equal(decoded(tmp_path / "deep.png"), expected)
    assert np.array_equal(decoded(tmp_path / "grey.png"), expected)


@pytest.mark.parametrize("colour_type", [4, 6], ids=["grey+alpha", "RGBA64"])
def test_16_bit_mask_drawn_in_low_alpha_values_marks_the_lesion(tmp_path, colour_type):
    """Alpha 0..255 in 16-bit samples: Pillow's high byte would make the whole mask transparent."""
    alpha = np.zeros((24, 40), dtype=np.uint16)
    alpha[5:15, 10:30] = 200
    colour = np.full((24, 40), 3000, dtype=np.uint16)
    channels = [colour, alpha] if colour_type == 4 else [colour, colour, colour, alpha]
    (tmp_path / "mask.png").write_bytes(png_bytes(np.stack(channels, axis=-1), colour_type))
    assert np.array_equal(
        np.asarray(decode_mask_file(tmp_path / "mask.png", MAX_PIXELS)), (alpha > 0).astype(np.uint8)
    )


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(9, 16),
    colour_type=st.sampled_from([0, 2, 4, 6]),
    shape=st.tuples(st.integers(2, 12), st.integers(2, 12)),
    data=st.data(),
)
def test_any_16_bit_png_is_grey_by_luma_scaled_from_its_own_range(bits, colour_type, shape, data):
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    pixels = data.draw(arrays(np.uint16, (*shape, channels), elements=st.integers(0, 2**bits - 1)))
    png = png_bytes(pixels[..., 0] if colour_type == 0 else pixels, colour_type)
    colour = pixels[..., :3] if colour_type in (2, 6) else pixels[..., :1].repeat(3, axis=-1)
    expected = to_uint8(np.round(colour.astype(np.float64) @ LUMA))
    image, _ = decode_file(_saved(png), MAX_PIXELS)
    assert np.array_equal(np.asarray(image), expected)


def _saved(data: bytes, name: str = "image.png") -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "metadata",
    ["xmp", "icc", "text"],
)
def test_png_whose_metadata_exceeds_pillows_safety_limit_is_read_without_it(tmp_path, metadata):
    import zlib

    from PIL import PngImagePlugin

    pixels = noise(8)
    big = bytes(np.random.default_rng(0).integers(0, 256, PngImagePlugin.MAX_TEXT_CHUNK + 10, dtype=np.uint8))
    chunk = {
        "xmp": (b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(big.hex().encode())),
        "icc": (b"iCCP", b"scanner profile\x00\x00" + zlib.compress(big * 2)),
        "text": (
            b"zTXt",
            b"Comment\x00\x00" + zlib.compress(b"scanner log " * PngImagePlugin.MAX_TEXT_CHUNK),
        ),
    }[metadata]
    (tmp_path / "scan.png").write_bytes(png_bytes(pixels, 0, bit_depth=8, chunks=[chunk]))
    assert np.array_equal(decoded(tmp_path / "scan.png"), pixels)


# --- 5. DICOM as PACS exports it --------------------------------------------------------------------


def pacs_export(root: Path) -> Path:
    """`root/<class>/` folders as a PACS exports them: files named IM00000 ..., no extension, a DICOMDIR."""
    for index, label in enumerate(["normal", "normal", "utd", "utd"]):
        write_dicom(root / label / f"IM{index:05d}", noise(index))
    from pydicom.dataset import Dataset, FileMetaDataset

    directory = Dataset()
    directory.file_meta = FileMetaDataset()
    directory.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    directory.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    directory.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    directory.DirectoryRecordSequence = []
    directory.save_as(root / "normal" / "DICOMDIR", enforce_file_format=True)
    return root


def test_dicom_files_without_extension_and_their_dicomdir_are_ingested_by_content(tmp_path):
    pacs_export(tmp_path / "export")
    data = load_ingested(ingest.run(tiny_params(tmp_path / "export"), tmp_path / "ingested"))
    assert sorted(Path(source).name for source in data.table["source"]) == [f"IM{i:05d}" for i in range(4)]
    assert np.array_equal(data.images[0], _cached(noise(0)))


def test_file_without_extension_that_is_no_image_is_still_refused(tmp_path):
    root = pacs_export(tmp_path / "export")
    (root / "utd" / "README").write_text("exported by PACS\n")
    listing = list_source(str(root), ["normal", "utd"], "patient_id")
    assert [problem.where for problem in listing.problems] == [str(root / "utd" / "README")]
    assert "not an image file" in listing.problems[0].rule


def _cached(pixels: np.ndarray) -> np.ndarray:
    from renalmae.data.decode import to_square

    return to_square(Image.fromarray(pixels), 32)


def preamble_less(data: bytes) -> bytes:
    return data[128:]


def meta_first(data: bytes) -> bytes:
    return data[132:]


def bare_dataset(data: bytes) -> bytes:
    """The dataset alone, implicit VR little endian, without preamble or file meta (an old PACS export)."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    dataset = pydicom.dcmread(io.BytesIO(data))
    del dataset.file_meta
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, dataset)
    return buffer.getvalue()


@pytest.mark.parametrize("variant", [preamble_less, meta_first, bare_dataset])
@pytest.mark.parametrize("name", ["scan.dcm", "IM00001"])
def test_dicom_without_its_preamble_is_decoded_in_ingest_and_predict(tmp_path, variant, name):
    reference = write_dicom(tmp_path / "reference.dcm", gradient())
    (tmp_path / name).write_bytes(variant(reference.read_bytes()))
    assert np.array_equal(decoded(tmp_path / name), decoded(reference))
    preparation = Preparation(size=32)
    assert np.array_equal(
        prepare_image_file(tmp_path / name, preparation), prepare_image_file(reference, preparation)
    )


def test_predict_reads_a_dicom_file_named_without_extension(tmp_path):
    """`predict` prepares images through `prepare_image_file`, as ingest decodes them."""
    shutil.copy(write_dicom(tmp_path / "scan.dcm", noise(5)), tmp_path / "IM00000")
    preparation = Preparation(size=32)
    assert np.array_equal(prepare_image_file(tmp_path / "IM00000", preparation), _cached(noise(5)))


def test_predict_names_a_file_that_is_no_image_with_the_fix(tmp_path):
    (tmp_path / "IM00000").write_bytes(b"not an image" * 20)
    with pytest.raises(DataError, match="IM00000: not a readable PNG / JPEG / DICOM image.*pass a readable"):
        prepare_image_file(tmp_path / "IM00000", Preparation(size=32))


def test_png_saved_under_a_dcm_name_is_read_by_its_content(tmp_path):
    (tmp_path / "scan.dcm").write_bytes(
        (tmp_path / "x").write_bytes(b"") or png_bytes(noise(6), 0, bit_depth=8)
    )
    assert np.array_equal(decoded(tmp_path / "scan.dcm"), noise(6))


def ybr_full_422(rgb: np.ndarray) -> bytes:
    """Native YBR_FULL_422 pixel data of `rgb` (PS3.3 C.7.6.3.1.2): Y0 Y1 Cb Cr per pair of pixels."""
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint8)
    y, cb, cr = ybr[..., 0], ybr[..., 1], ybr[..., 2]
    pairs = np.stack([y[:, 0::2], y[:, 1::2], cb[:, 0::2], cr[:, 0::2]], axis=-1)
    return pairs.tobytes()


def test_uncompressed_ybr_full_422_decodes_as_before_the_size_check(tmp_path):
    """Regression: 2 bytes per pixel, not 3."""
    from pydicom.uid import ExplicitVRLittleEndian

    rgb = np.repeat(np.random.default_rng(9).integers(0, 256, (20, 16, 3), dtype=np.uint8), 2, axis=1)
    path = write_dicom(tmp_path / "ybr422.dcm", rgb, "RGB")
    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.PhotometricInterpretation = "YBR_FULL_422"
    dataset.PixelData = ybr_full_422(rgb)
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.save_as(path)
    assert len(dataset.PixelData) == 20 * 32 * 2
    expected = np.round(rgb @ LUMA)
    assert np.abs(decoded(path).astype(int) - expected).max() <= 2


def test_pydicom_uncompressed_ybr_full_422_example_decodes_like_its_jpeg(tmp_path):
    from test_scanner_inputs import pydicom_example

    uncompressed = decoded(pydicom_example("SC_ybr_full_422_uncompressed.dcm"))
    assert np.array_equal(uncompressed, decoded(pydicom_example("SC_rgb_jpeg_dcmtk.dcm")))


def test_number_of_frames_zero_is_read_as_one_frame(tmp_path):
    path = write_dicom(tmp_path / "zero.dcm", gradient(), NumberOfFrames="0")
    assert np.array_equal(decoded(path), gradient())


def test_12_bit_jpeg_extended_decodes_to_pydicoms_published_values(tmp_path):
    """pydicom's reference values of JPGExtended.dcm (tests/pixels/pixels_reference.py: 244 at [420, 140],
    95 at [230, 120]), decoded here by pylibjpeg: GDCM refuses 12-bit JPEG Extended."""
    import pydicom
    from pydicom.pixels import pixel_array
    from test_scanner_inputs import pydicom_example

    path = pydicom_example("JPGExtended.dcm")
    stored = pixel_array(pydicom.dcmread(path))
    assert stored[420, 140] == 244 and stored[230, 120] == 95
    assert np.array_equal(decoded(path), to_uint8(stored))  # no window in the file: its own range


@settings(max_examples=30, deadline=None)
@given(
    bits_stored=st.integers(9, 16),
    frames=st.integers(0, 3),
    slope=st.sampled_from(["1", "2", "0.5"]),
    intercept=st.sampled_from(["0", "-1024", "100"]),
    seed=st.integers(0, 2**16),
)
def test_any_monochrome_header_decodes_the_first_frame_through_its_rescale(
    bits_stored, frames, slope, intercept, seed
):
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 2**bits_stored, size=(max(frames, 1), 6, 8), dtype=np.uint16)
    import tempfile

    folder = Path(tempfile.mkdtemp())
    elements = {"RescaleSlope": slope, "RescaleIntercept": intercept}
    if frames != 1:
        elements["NumberOfFrames"] = str(frames)
    path = write_dicom(
        folder / "clip.dcm", clip if frames > 1 else clip[0], bits_stored=bits_stored, **elements
    )
    expected = to_uint8(clip[0] * float(slope) + float(intercept))
    assert np.array_equal(decoded(path), expected)


def test_bad_image_message_for_an_unknown_file_names_all_three_formats(tmp_path):
    (tmp_path / "IM00000").write_bytes(b"\x00" * 300)
    with pytest.raises(BadImage, match="PNG / JPEG / DICOM"):
        decode_file(tmp_path / "IM00000", MAX_PIXELS)
