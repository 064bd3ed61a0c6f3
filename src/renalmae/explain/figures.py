"""Pictures of explanations: labelled strips (image | CAM | overlay | mask outline), grids, one HTML page."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from scipy import ndimage  # noqa: E402

OUTLINE_RGB = np.array([0, 255, 0], dtype=np.uint8)
OVERLAY_ALPHA = 0.45
PANEL_GAP_PX = 2
LABEL_BAND_PX = 16


@dataclass(frozen=True)
class ExplainedImage:
    """One explained image: pixels, Score-CAM map, lesion mask and what the model said about it."""

    image_id: str
    label: str
    image: np.ndarray  # uint8 [H, W]
    cam: np.ndarray  # float [H, W] in [0, 1]
    mask: np.ndarray  # uint8/bool [H, W]; all zero when there is no lesion
    explained_class: str
    predicted_class: str
    probability: float  # of the predicted class


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(image, dtype=np.uint8)[..., None], 3, axis=-1)


def cam_rgb(cam: np.ndarray) -> np.ndarray:
    """The map in the `jet` colour map as uint8 RGB."""
    return (plt.get_cmap("jet")(np.clip(cam, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner boundary of a mask (bool)."""
    mask = np.asarray(mask).astype(bool)
    return mask & ~ndimage.binary_erosion(mask)


def overlay_rgb(image: np.ndarray, cam: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The image blended with its coloured map, with the lesion mask outlined in green when given."""
    blended = (1 - OVERLAY_ALPHA) * _grey_rgb(image) + OVERLAY_ALPHA * cam_rgb(cam)
    blended = blended.astype(np.uint8)
    if mask is not None:
        blended[mask_outline(mask)] = OUTLINE_RGB
    return blended


def overlay_strip(item: ExplainedImage) -> np.ndarray:
    """Four panels side by side: image | CAM | overlay | image with the mask outline."""
    outlined = _grey_rgb(item.image)
    outlined[mask_outline(item.mask)] = OUTLINE_RGB
    panels = [
        _grey_rgb(item.image),
        cam_rgb(item.cam),
        overlay_rgb(item.image, item.cam, item.mask),
        outlined,
    ]
    gap = np.full((item.image.shape[0], PANEL_GAP_PX, 3), 255, dtype=np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)


def panel_labels(item: ExplainedImage) -> list[str]:
    """What each panel of `overlay_strip` shows, left to right."""
    has_mask = bool(np.asarray(item.mask).any())
    return [
        "image",
        f"Score-CAM: {item.explained_class}",
        "overlay",
        "lesion mask" if has_mask else "no mask",
    ]


def _label_band(
    width: int, panel_width: int, gap: int, labels: list[str], height: int = LABEL_BAND_PX
) -> Image.Image:
    """A white band `height` px high with each label centred over its panel, in the largest default font
    that fits (at most `height` − 5 px)."""
    band = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for index, label in enumerate(labels):
        for size in range(height - 5, 5, -1):
            font = ImageFont.load_default(size=size)
            left, _, right, _ = draw.textbbox((0, 0), label, font=font)
            if right - left <= panel_width - 2:
                break
        x = index * (panel_width + gap) + (panel_width - (right - left)) // 2
        draw.text((x, 2), label, fill=(0, 0, 0), font=font)
    return band


def save_overlay(path: str | os.PathLike, item: ExplainedImage, scale: int = 1) -> Path:
    """Write the overlay strip of `item` as a PNG (nearest-neighbour upscaled by `scale`), panels labelled."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = overlay_strip(item)
    if scale > 1:
        strip = np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1)
    gap = PANEL_GAP_PX * max(scale, 1)
    panel_width = item.image.shape[1] * max(scale, 1)
    labelled = Image.new("RGB", (strip.shape[1], strip.shape[0] + LABEL_BAND_PX), (255, 255, 255))
    labelled.paste(_label_band(strip.shape[1], panel_width, gap, panel_labels(item)))
    labelled.paste(Image.fromarray(strip), (0, LABEL_BAND_PX))
    labelled.save(path)
    return path


def grid_figure(
    path: str | os.PathLike, items: list[ExplainedImage], title: str | None = None, scale: int = 2
) -> Path:
    """One row per class, one column per image: overlays with mask outlines (nearest-neighbour upscaled
    by `scale`), each labelled `true class | top <class> <probability>`, as a PNG: the class of highest
    probability, which is not the decision at an operating point (a fold model carries none here).

    `title` goes in a band above the grid; leave it out where the page's heading already names the figure.
    Drawn with PIL (a matplotlib grid cost ~2 s of CPU per figure, an eighth of the default explain stage).
    """
    path = Path(path)
    classes = list(dict.fromkeys(item.label for item in items))
    rows = [[item for item in items if item.label == name] for name in classes] or [[]]
    columns = max(len(row) for row in rows) or 1
    height, width = np.asarray(items[0].image).shape[:2] if items else (1, 1)
    panel_h, panel_w = height * scale, width * scale
    gap = PANEL_GAP_PX * scale
    band_px = LABEL_BAND_PX * max(1, scale // 2)  # the labels grow with the pictures
    cell_h = band_px + panel_h + gap
    title_h = 2 * LABEL_BAND_PX if title else 0
    grid_w = columns * (panel_w + gap) - gap
    grid = Image.new("RGB", (max(grid_w, 1), title_h + len(rows) * cell_h - gap), (255, 255, 255))
    if title:
        draw = ImageDraw.Draw(grid)
        draw.text((2, LABEL_BAND_PX // 2), title, fill=(0, 0, 0), font=ImageFont.load_default(size=12))
    for row, row_items in enumerate(rows):
        top = title_h + row * cell_h
        labels = [f"{i.label} | top {i.predicted_class} {i.probability:.2f}" for i in row_items]
        grid.paste(_label_band(grid_w, panel_w, gap, labels, band_px), (0, top))
        for column, item in enumerate(row_items):
            panel = overlay_rgb(*(_upscaled(part, scale) for part in (item.image, item.cam, item.mask)))
            grid.paste(Image.fromarray(panel), (column * (panel_w + gap), top + band_px))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def _upscaled(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by `scale` (so a mask's outline is drawn one display pixel thin)."""
    return np.repeat(np.repeat(np.asarray(pixels), scale, axis=0), scale, axis=1)


def _embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


Table = tuple[list[str], list[list[object]]]
"""A table for `write_html`: header cells and rows of cells (numbers are printed with 3 decimals)."""


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(table: Table) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(
    path: str | os.PathLike,
    title: str,
    note: str,
    tables: dict[str, Table],
    sections: dict[str, list[Path]],
    notes: dict[str, str] | None = None,
    answers: dict[str, Table] | None = None,
) -> Path:
    """A self-contained page (images embedded as data URIs): a note, titled tables, then figures per section.

    `notes` adds a paragraph under the table or section of the same title. With `answers`, the page opens
    with those tables, then the figures, then `tables`.
    """
    path = Path(path)
    notes = notes or {}
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%;margin:4px 0}"
        "figure{margin:0 0 8px 0}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(note)}</p>",
    ]

    def add_tables(group: dict[str, Table]) -> None:
        for name, table in group.items():
            parts.append(f"<h2>{html.escape(name)}</h2>")
            if name in notes:
                parts.append(f"<p>{html.escape(notes[name])}</p>")
            parts.append(_table(table))

    def add_sections() -> None:
        for name, images in sections.items():
            parts.append(f"<h2>{html.escape(name)}</h2>")
            if name in notes:
                parts.append(f"<p>{html.escape(notes[name])}</p>")
            for image in images:
                parts.append(
                    f"<figure><img src='{_embedded_png(image)}' alt='{html.escape(image.stem)}'></figure>"
                )

    if answers is None:
        add_tables(tables)
        add_sections()
    else:
        add_tables(answers)
        add_sections()
        add_tables(tables)
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
