"""The MAE on real kidney ultrasound frames (../shared/data; skipped when absent)."""

import numpy as np
import pandas as pd
import pytest
import torch
from modelkit import IMAGE_SIZE
from PIL import Image

from renalmae.models import create_model, to_model_input

pytestmark = pytest.mark.realdata


def kidney_frames(shared_data, count: int = 16) -> torch.Tensor:
    """uint8 `[count, S, S]`: one frame from each of `count` different series, resized to the test size."""
    manifest = pd.read_csv(shared_data / "hydronephrosis" / "manifest.csv")
    picks = manifest.drop_duplicates("series_id").head(count)
    frames = [
        np.asarray(
            Image.open(shared_data / "hydronephrosis" / path).convert("L").resize((IMAGE_SIZE, IMAGE_SIZE))
        )
        for path in picks["image"]
    ]
    return torch.from_numpy(np.stack(frames))


def test_real_frames_map_to_a_centred_model_input(shared_data):
    inputs = to_model_input(kidney_frames(shared_data))
    assert inputs.shape == (16, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert inputs.min() >= -2.0 and inputs.max() <= 2.0 and inputs.std() > 0.1


def test_mae_learns_to_reconstruct_real_ultrasound(shared_data, params):
    torch.manual_seed(0)
    inputs = to_model_input(kidney_frames(shared_data))
    mae = create_model("mae", params)
    optimizer = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        torch.manual_seed(1)
        loss, _, _ = mae(inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
