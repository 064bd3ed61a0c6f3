"""Explaining a trained model on uint8 images or image files: layer choice, preprocessing, Score-CAM, a page.

`image_channel_scores` / `explain_uint8` are what the `explain` step runs on cached holdout images;
`explain_images` is the single-image entry point (`renalmae explain --model RUN_DIR|models:/… IMAGE…` and
`renalmae predict --explain`): it decodes and resizes files exactly as ingest and the served model do,
explains the predicted class and writes one labelled overlay per image, `explanations.json` and
`index.html` to the output folder. A `models:/` URI is explained as the fold ensemble that serves its
predictions (`renalmae.explain.ensemble`), so the page's probabilities are the prediction table's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from renalmae.errors import DataError, ModelError
from renalmae.explain.ensemble import MeanProbabilityEnsemble, ensemble_layer
from renalmae.explain.figures import ExplainedImage, save_overlay, write_html
from renalmae.explain.layers import CamLayer, check_grid, cnn_layer, is_vit, vit_layer
from renalmae.explain.scorecam import CamResult, ChannelScores, Precision, cam_result, channel_scores
from renalmae.io import atomic_dir, write_json
from renalmae.models.preprocess import to_model_input
from renalmae.operating_point import registered_rule
from renalmae.params import ExplainParams
from renalmae.train.threads import use_cpu_threads

if TYPE_CHECKING:
    from renalmae.registry.pyfunc import FoldEnsemble


def cam_layer(model: nn.Module, settings: ExplainParams) -> tuple[CamLayer, int]:
    """The Score-CAM layer of `model` (a ViT, a CNN or a fold ensemble of either) and its top-k channels."""
    if isinstance(model, MeanProbabilityEnsemble):
        layer = ensemble_layer(model, settings.vit_layer, settings.cnn_layer, settings.vit_tokens == "unit")
        vit = is_vit(model.members[0])
    else:
        vit = is_vit(model)
        layer = (
            vit_layer(model, settings.vit_layer, unit_tokens=settings.vit_tokens == "unit")
            if vit
            else cnn_layer(model, settings.cnn_layer)
        )
    return layer, settings.vit_channels if vit else settings.cnn_channels


def image_channel_scores(
    model: nn.Module,
    images: np.ndarray,
    settings: ExplainParams,
    precision: Precision = "auto",
    progress: bool = False,
) -> ChannelScores:
    """Score-CAM's masked passes over uint8 images [N, H, W], with the layer and channels of `settings`.

    A CNN runs channels-last (on the CPU too: DenseNet-169 at 64 px is ~30 % faster per image so).
    """
    layer, channels = cam_layer(model, settings)
    device = next(model.parameters()).device
    channels_last = not is_vit(model) and not isinstance(model, MeanProbabilityEnsemble)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = to_model_input(torch.as_tensor(np.ascontiguousarray(images)).to(device))
    return channel_scores(
        model, inputs, layer=layer, channels=channels, batch_size=settings.batch_size,
        precision=precision, channels_last=channels_last, progress=progress,
    )  # fmt: skip


def explain_uint8(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray | list[int] | None,
    settings: ExplainParams,
    precision: Precision = "auto",
    progress: bool = False,
) -> CamResult:
    """Score-CAM maps (`settings.weighting`) of uint8 images [N, H, W] for `targets` (None: predicted)."""
    scores = image_channel_scores(model, images, settings, precision, progress)
    return cam_result(scores, targets, settings.weighting)


def _load(
    model_ref: str | os.PathLike | nn.Module | FoldEnsemble, tracking_uri: str | None
) -> tuple[nn.Module, dict]:
    from renalmae.registry.pyfunc import FoldEnsemble

    if isinstance(model_ref, nn.Module):
        return model_ref.eval(), {}
    if isinstance(model_ref, str) and model_ref.startswith("models:/"):
        from renalmae.registry.connection import tracking_uri as default_tracking_uri
        from renalmae.registry.serving import load_ensemble

        model_ref = load_ensemble(model_ref, tracking_uri or default_tracking_uri())
    if isinstance(model_ref, FoldEnsemble):
        if not model_ref.models:
            raise ModelError("the registered model holds no fold models; register the model again")
        return MeanProbabilityEnsemble(model_ref.models).eval(), dict(model_ref.info)
    from renalmae.models.trained import load_trained_model

    return load_trained_model(model_ref)


def _image_size(model: nn.Module, info: dict) -> int:
    if "image_size" in info:
        return int(info["image_size"])
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is None:
        raise ModelError("the model does not say its input size (no image_size in run.json); use a run dir")
    return int(size[0])


def read_images(image_paths: list[str | os.PathLike], size: int, crop: str = "none") -> np.ndarray:
    """Decode image files to uint8 greyscale [N, size, size] exactly as ingest does (`prepare_image_file`)."""
    from renalmae.data.decode import Preparation, prepare_image_file

    preparation = Preparation(size=size, crop=crop)
    return np.stack([prepare_image_file(path, preparation) for path in image_paths])


def explain_images(
    model_or_run_dir: str | os.PathLike | nn.Module | FoldEnsemble,
    image_paths: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: ExplainParams | None = None,
    classes: list[str] | None = None,
    tracking_uri: str | None = None,
    cpu_threads: int = 0,
    model_name: str | None = None,
) -> Path:
    """Explain the predicted class of each image file; write labelled overlays, explanations.json, index.html.

    A `models:/` URI (or a loaded `FoldEnsemble`) is explained as the fold ensemble that serves its
    predictions: mean probability, every member's channels.
    `cpu_threads` is `train.cpu_threads`: torch's thread count, 0 = the cores available to this process
    (`renalmae.train.threads`). `model_name` names a loaded model on the page (e.g. its `models:/` URI);
    a path or URI names itself.
    """
    if not image_paths:
        raise DataError("no images given; pass one or more image files to explain")
    use_cpu_threads(cpu_threads)
    settings = settings or ExplainParams()
    model, info = _load(model_or_run_dir, tracking_uri)
    classes = classes or list(info.get("classes", []))
    images = read_images(image_paths, _image_size(model, info), info.get("crop", "none"))
    # The class mapped is the one `predict` gives: the ensemble's registered operating point where it has one.
    scores = image_channel_scores(model, images, settings)
    rule = registered_rule(info)
    targets = None if rule is None else rule.predict(scores.probabilities.float().cpu().numpy())
    result = cam_result(scores, targets, settings.weighting)
    layer, _ = cam_layer(model, settings)
    grid_warning = check_grid(result.grid, layer.path, settings.min_grid)
    members = len(model.members) if isinstance(model, MeanProbabilityEnsemble) else 1
    if model_name is None:
        loaded = not isinstance(model_or_run_dir, str | os.PathLike)
        model_name = type(model_or_run_dir).__name__ if loaded else str(model_or_run_dir)
    out_dir = Path(out_dir)
    records, rows, sections = [], [], {}
    with atomic_dir(out_dir) as staging_dir:
        for index, path in enumerate(image_paths):
            target = int(result.targets[index])
            name = classes[target] if target < len(classes) else str(target)
            item = ExplainedImage(
                image_id=Path(path).stem, label="", image=images[index], cam=result.maps[index].cpu().numpy(),
                mask=np.zeros_like(images[index]), explained_class=name, predicted_class=name,
                probability=float(result.probabilities[index, target]),
            )  # fmt: skip
            overlay = save_overlay(staging_dir / f"{index:03d}_{Path(path).stem}.png", item, scale=2)
            heading = f"{Path(path).name}: predicted {name} ({item.probability:.2f})"
            sections.setdefault(heading, []).append(overlay)
            records.append({"image": str(path), "predicted": name, "probability": item.probability,
                            "overlay": overlay.name})  # fmt: skip
            rows.append([Path(path).name, name, f"{item.probability:.3f}", overlay.name])
        explained = {
            "model": model_name, "fold_models": members, "layer": layer.path,
            "grid": list(result.grid), "channels": result.channels, "layer_channels": result.layer_channels,
            "weighting": settings.weighting, "grid_warning": grid_warning,
        }  # fmt: skip
        write_json(staging_dir / "explanations.json", {**explained, "images": records})
        note = (
            f"model: {model_name} ({members} fold model{'s' if members > 1 else ''}; probabilities are "
            f"{'their mean, as served' if members > 1 else 'its own'}); Score-CAM of the predicted class, "
            f"{settings.weighting} weighting, layer {layer.path} ({result.grid[0]} × {result.grid[1]} grid, "
            f"{result.channels} of {result.layer_channels} channels)"
            + (f". Warning: {grid_warning}" if grid_warning else "")
        )
        table = (["image", "predicted class", "probability", "overlay"], rows)
        write_html(staging_dir / "index.html", "Score-CAM explanations", note, {"Predictions": table},
                   sections)  # fmt: skip
    return out_dir
