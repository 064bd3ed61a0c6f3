"""Decoding one image file (PNG / JPEG via Pillow, DICOM via pydicom) into uint8 greyscale as viewers show it.

One module per concern: `files` (one file or task: read, decode by format, crop, resize), `pillow`
(PNG / JPEG), `dicom` and `dicom_header` (DICOM), `sector` (the `data.crop` box), `pixels` (what they
share). The names other modules use are re-exported here.
"""

from renalmae.data.decode.dicom import DICOM_SUFFIX, apply_window, decode_dicom
from renalmae.data.decode.dicom_header import DicomImage, header_value
from renalmae.data.decode.files import (
    Decoded,
    DecodeTask,
    Failed,
    Preparation,
    decode_all,
    decode_chunk,
    decode_file,
    decode_mask_file,
    decode_task,
    prepare_image_file,
    prepare_pixels,
    read_file,
    read_image,
    to_square,
)
from renalmae.data.decode.pillow import mask_pixels, open_pillow, pillow_grey, upright
from renalmae.data.decode.pixels import DEFAULT_MAX_IMAGE_PIXELS, BadImage, pixel_sha256, to_uint8
from renalmae.data.decode.sector import crop_box, parse_crop, sector_box

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS", "DICOM_SUFFIX", "BadImage", "Decoded", "DecodeTask", "DicomImage", "Failed",
    "Preparation", "apply_window", "crop_box", "decode_all", "decode_chunk", "decode_dicom", "decode_file",
    "decode_mask_file", "decode_task", "header_value", "mask_pixels", "open_pillow", "parse_crop",
    "pillow_grey", "pixel_sha256", "prepare_image_file", "prepare_pixels", "read_file", "read_image",
    "sector_box", "to_square", "to_uint8", "upright",
]  # fmt: skip
