"""Batched inference: class probabilities of a classifier for uint8 images (bf16 autocast on CUDA)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from renalmae.models.preprocess import to_model_input


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module,
    images_uint8: np.ndarray | torch.Tensor,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Softmax probabilities [N, C] of `model` for uint8 images [N, H, W] (float64, rows sum to 1)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    images = (
        torch.as_tensor(np.asarray(images_uint8)) if isinstance(images_uint8, np.ndarray) else images_uint8
    )
    channels_last = any(
        parameter.dim() == 4 and parameter.is_contiguous(memory_format=torch.channels_last)
        and not parameter.is_contiguous()
        for parameter in model.parameters()
    )  # fmt: skip
    chunks = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for start in range(0, len(images), batch_size):
        inputs = to_model_input(images[start : start + batch_size].to(device, non_blocking=True))
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(inputs)
        chunks.append(torch.softmax(logits.float(), dim=1))
    model.train(was_training)
    if not chunks:
        num_classes = getattr(model, "num_classes", 0)
        return np.zeros((0, num_classes), dtype=np.float64)
    return torch.cat(chunks).cpu().numpy().astype(np.float64)
