"""Explaining a trained model on uint8 images or image files: preprocessing, Score-CAM, overlays, a page.

`explain_uint8` is what the `explain` step runs on cached holdout images; `explain_images` is the
single-image entry point (`renalmae explain --model RUN_DIR|models:/… IMAGE…`): it decodes and resizes
files exactly as ingest does, explains the predicted class and writes one overlay per image,
`explanations.json` and `index.html` to the output folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from renalmae.errors import DataError, ModelError
from renalmae.explain.figures import ExplainedImage, save_overlay, write_html
from renalmae.explain.scorecam import CamResult, Precision, cnn_layer, explain, is_vit, vit_layer
from renalmae.io import atomic_dir, write_json
from renalmae.models.preprocess import to_model_input
from renalmae.params import ExplainParams


def explain_uint8(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray | list[int] | None,
    settings: ExplainParams,
    precision: Precision = "auto",
    progress: bool = False,
) -> CamResult:
    """Score-CAM of uint8 images [N, H, W] with the layer and batch size of `settings`, on its device."""
    device = next(model.parameters()).device
    vit = is_vit(model)
    layer = vit_layer(model, settings.vit_layer) if vit else cnn_layer(model, settings.cnn_layer)
    channels_last = device.type == "cuda" and not vit
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = to_model_input(torch.as_tensor(np.ascontiguousarray(images)).to(device))
    if targets is not None:
        targets = torch.tensor(np.array(targets, dtype=np.int64))
    return explain(
        model, inputs, targets, layer=layer,
        batch_size=settings.batch_size, precision=precision, channels_last=channels_last, progress=progress,
    )  # fmt: skip


def _load(model_ref: str | os.PathLike | nn.Module, tracking_uri: str | None) -> tuple[nn.Module, dict]:
    if isinstance(model_ref, nn.Module):
        return model_ref.eval(), {}
    if str(model_ref).startswith("models:/"):
        from renalmae.registry.connection import tracking_uri as default_tracking_uri
        from renalmae.registry.serving import load_registered_model

        fold_models, info = load_registered_model(str(model_ref), tracking_uri or default_tracking_uri())
        if not fold_models:
            raise ModelError(f"{model_ref} holds no fold models; register the model again")
        return fold_models[0].eval(), info  # the ensemble's first fold model is the one explained
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
    model_or_run_dir: str | os.PathLike | nn.Module,
    image_paths: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: ExplainParams | None = None,
    classes: list[str] | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """Explain the predicted class of each image file; write overlays, explanations.json and index.html."""
    if not image_paths:
        raise DataError("no images given; pass one or more image files to explain")
    settings = settings or ExplainParams()
    model, info = _load(model_or_run_dir, tracking_uri)
    classes = classes or list(info.get("classes", []))
    images = read_images(image_paths, _image_size(model, info), info.get("crop", "none"))
    result = explain_uint8(model, images, None, settings)
    out_dir = Path(out_dir)
    records, sections = [], {}
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
            sections[f"{Path(path).name}: predicted {name} ({item.probability:.2f})"] = [overlay]
            records.append({"image": str(path), "predicted": name, "probability": item.probability,
                            "overlay": overlay.name})  # fmt: skip
        write_json(staging_dir / "explanations.json", {"model": str(model_or_run_dir), "images": records})
        panels = "image | Score-CAM map of the predicted class | overlay | image (no lesion mask for files)"
        note = f"model: {model_or_run_dir}. Each strip: {panels}."
        write_html(staging_dir / "index.html", {}, sections, note=note)
    return out_dir
