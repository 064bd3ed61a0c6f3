"""Training figures: the loss curve and MAE reconstructions (original | masked | reconstruction)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from renalmae.models.preprocess import from_model_input, to_model_input  # noqa: E402


def plot_loss(
    step_losses: list[tuple[int, int, float]], path: Path, title: str = "MAE pretraining loss"
) -> None:
    steps = [step for _, step, _ in step_losses]
    losses = [loss for _, _, loss in step_losses]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, losses, lw=1)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@torch.no_grad()
def plot_reconstructions(mae: torch.nn.Module, images_uint8: np.ndarray, path: Path, seed: int = 0) -> None:
    """One column per image: the original, the visible patches, and the MAE's reconstruction."""
    mae.eval()
    device = next(mae.parameters()).device
    inputs = to_model_input(torch.as_tensor(np.asarray(images_uint8)).to(device))
    torch.manual_seed(seed)
    _, pred, mask = mae(inputs)
    panels = mae.reconstruction_images(inputs, pred, mask)
    rows = [
        ("original", panels["original"]),
        ("masked", panels["masked"]),
        ("reconstruction", panels["pasted"]),
    ]
    count = len(inputs)
    figure, axes = plt.subplots(3, count, figsize=(1.4 * count, 4.4), squeeze=False)
    for row, (name, images) in enumerate(rows):
        shown = from_model_input(images).cpu().numpy()
        for column in range(count):
            axis = axes[row][column]
            axis.imshow(shown[column, 0], cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(name)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
