"""Trained-model directories: how a fine-tuned / baseline model and a pretrained encoder are stored.

Contract (written by finetune / baseline / pretrain, read by explain, compare and the registry):

    <run_dir>/weights.safetensors   the model's state dict (safetensors, contiguous CPU tensors)
    <run_dir>/run.json              {"spec": model_spec(...), "model", "role", "task",
                                     "fold", "classes", "image_size", ...}; other keys are kept on merge
    <encoder_dir>/encoder.safetensors  the MAE encoder under timm ViT key names
    <encoder_dir>/encoder.json         {"spec": the MAE model_spec, ...info}

A model is rebuilt from `run.json["spec"]` alone (`build_from_spec`), so a reader needs no params.
Every project-written weight file is safetensors (no pickle). Files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from renalmae.artifacts import Encoder, TrainedRun
from renalmae.errors import ModelError
from renalmae.io import atomic_file, read_json, write_json
from renalmae.models.checkpoints import encoder_state_dict
from renalmae.models.factory import build_from_spec

WEIGHTS_FILE = TrainedRun.WEIGHTS
RUN_FILE = TrainedRun.RUN
ENCODER_WEIGHTS_FILE = Encoder.WEIGHTS
ENCODER_INFO_FILE = Encoder.INFO


def save_trained_model(run_dir: str | os.PathLike, model: nn.Module, spec: dict, info: dict) -> None:
    """Write `weights.safetensors` and merge `{"spec": spec, **info}` into `run.json` in `run_dir`."""
    run_dir = Path(run_dir)
    model = getattr(model, "_orig_mod", model)
    _save_tensors(run_dir / WEIGHTS_FILE, model.state_dict())
    run_path = run_dir / RUN_FILE
    record = read_json(run_path) if run_path.is_file() else {}
    record.update({"spec": spec, **info})
    write_json(run_path, record)


def load_trained_model(
    run_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model of `run_dir` from its spec and weights, in eval mode; return `(model, run.json)`."""
    run_dir = Path(run_dir)
    run_path = run_dir / RUN_FILE
    if not run_path.is_file():
        raise ModelError(
            f"{run_path} not found: {run_dir} is not a trained-model directory; run finetune/baseline"
        )
    info = read_json(run_path)
    if "spec" not in info:
        raise ModelError(f"{run_path} has no 'spec'; re-run the training step that wrote it")
    model = build_from_spec(info["spec"])
    state = _load_tensors(run_dir / WEIGHTS_FILE)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelError(
            f"{run_dir / WEIGHTS_FILE} does not match the spec in {run_path} ({str(error)[:300]}); "
            "re-run the training step"
        ) from None
    return model.to(device).eval(), info


def save_encoder(
    out_dir: str | os.PathLike, mae: nn.Module, spec: dict, info: dict[str, Any] | None = None
) -> None:
    """Write the MAE encoder (`encoder.safetensors`) and `encoder.json` = `{"spec": spec, **info}`."""
    out_dir = Path(out_dir)
    _save_tensors(out_dir / ENCODER_WEIGHTS_FILE, encoder_state_dict(mae))
    write_json(out_dir / ENCODER_INFO_FILE, {"spec": spec, **(info or {})})


def load_encoder(encoder_dir: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """The encoder state dict (for `load_encoder_into_vit`) and `encoder.json` of a pretrain output."""
    encoder_dir = Path(encoder_dir)
    info_path = encoder_dir / ENCODER_INFO_FILE
    if not info_path.is_file():
        raise ModelError(
            f"{info_path} not found: {encoder_dir} holds no pretrained encoder; run pretrain first"
        )
    return _load_tensors(encoder_dir / ENCODER_WEIGHTS_FILE), read_json(info_path)


def _save_tensors(path: Path, state: dict[str, Tensor]) -> None:
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}
    with atomic_file(path) as staging_path:
        save_file(tensors, str(staging_path), metadata={"format": "pt"})


def _load_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ModelError(f"{path} not found; re-run the training step that writes it")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ModelError(
            f"{path} is not a readable safetensors file ({error}); re-run the training step"
        ) from None
