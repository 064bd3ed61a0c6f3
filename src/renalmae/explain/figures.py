"""Pictures of explanations: strips (image | CAM | overlay | mask outline), grids, one HTML page."""

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
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

OUTLINE_RGB = np.array([0, 255, 0], dtype=np.uint8)
OVERLAY_ALPHA = 0.45
PANEL_GAP_PX = 2


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


def save_overlay(path: str | os.PathLike, item: ExplainedImage, scale: int = 1) -> Path:
    """Write the overlay strip of `item` as a PNG (nearest-neighbour upscaled by `scale`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = Image.fromarray(overlay_strip(item))
    if scale > 1:
        strip = strip.resize((strip.width * scale, strip.height * scale), Image.Resampling.NEAREST)
    strip.save(path)
    return path


def grid_figure(path: str | os.PathLike, items: list[ExplainedImage], title: str) -> Path:
    """One row per class, one column per image: overlays with mask outlines and the prediction."""
    path = Path(path)
    classes = list(dict.fromkeys(item.label for item in items))
    columns = max((sum(item.label == name for item in items) for name in classes), default=1)
    figure, axes = plt.subplots(
        len(classes) or 1, columns, figsize=(2.2 * columns, 2.4 * max(len(classes), 1)), squeeze=False
    )
    for axis in axes.flat:
        axis.axis("off")
    for row, class_name in enumerate(classes):
        for column, item in enumerate(item for item in items if item.label == class_name):
            axis = axes[row, column]
            axis.imshow(overlay_rgb(item.image, item.cam, item.mask), interpolation="nearest")
            axis.set_title(f"{class_name} → {item.predicted_class} ({item.probability:.2f})", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")  # a title wider than the grid is not cut off
    plt.close(figure)
    return path


def _embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _metrics_table(localisation: dict) -> str:
    rows = []
    for model_name, tasks in localisation.items():
        for task, classes in tasks.items():
            for class_name, entry in classes.items():
                values = [
                    entry.get(key) for key in ("energy_in_mask", "energy_ratio_vs_uniform", "pointing_game")
                ]
                cells = "".join(f"<td>{'—' if value is None else f'{value:.3f}'}</td>" for value in values)
                rows.append(
                    f"<tr><td>{html.escape(model_name)}</td><td>{html.escape(task)}</td>"
                    f"<td>{html.escape(class_name)}</td><td>{entry.get('n', 0)}</td>{cells}</tr>"
                )
    header = (
        "<tr><th>model</th><th>task</th><th>class</th><th>n (with mask)</th><th>energy in mask</th>"
        "<th>energy ratio vs uniform</th><th>pointing game</th></tr>"
    )
    return f"<table>{header}{''.join(rows)}</table>"


def write_html(
    path: str | os.PathLike, localisation: dict, sections: dict[str, list[Path]], note: str
) -> Path:
    """A self-contained page (images embedded as data URIs): the metrics table, then figures per section."""
    path = Path(path)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>renalmae Score-CAM</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%;margin:4px 0}"
        "figure{margin:0 0 8px 0}</style></head><body>",
        "<h1>Score-CAM explanations</h1>",
        f"<p>{html.escape(note)}</p>",
    ]
    if localisation:
        parts += [
            "<h2>Localisation against lesion masks</h2>",
            "<p>Energy ratio vs uniform: 1.0 = no better than a uniform map. Images without a lesion mask "
            "(normal) are not measured.</p>",
            _metrics_table(localisation),
        ]
    for title, images in sections.items():
        # the section title says what the figures show; their file names would say nothing more
        parts.append(f"<h2>{html.escape(title)}</h2>")
        for image in images:
            parts.append(
                f"<figure><img src='{_embedded_png(image)}' alt='{html.escape(image.stem)}'></figure>"
            )
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
