"""Helpers of the explain tests: tiny params for a 32-pixel phantom, a tiny ViT and a small CNN."""

from __future__ import annotations

from functools import partial

from renalmae import testing

EXPLAIN = {
    "data": {"source": "phantom://renal?n=48&seed=0", "pool": []},
    "phantom": {"class_fractions": [0.34, 0.33, 0.33]},
    "encoder": {"embed_dim": 16},
    "baseline": {"arch": "resnet10t"},
    "finetune": {"tasks": ["binary", "multiclass"]},
    "explain": {
        "images_per_class": 2,
        "batch_size": 128,
        "cnn_layer": "layer2",
        "cnn_channels": 8,
        "faithfulness_steps": 4,
        "max_images": 8,
        "occlusion_images": 4,
        "lesion_placements": 6,
    },
}
tiny_params = partial(testing.tiny_params, EXPLAIN)


def phantom_localisation(
    model_kind: str,
    n: int,
    epochs: int,
    size: int = 64,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    weighting: str = "score",
) -> dict[str, list[float]]:
    """Train a tiny model on an easy phantom (difficulty 0, balanced classes) with plain AdamW, then return
    the energy-in-mask ratio vs uniform of its Score-CAM maps (true class) on 30 fresh utd / mcdk images,
    per lesion class.

    `model_kind`: "vit" (patch 8, 32 wide, 2 blocks) or "cnn" (a tiny timm DenseNet, growth 8).
    """
    import timm
    import torch
    from timm.models.densenet import DenseNet

    from renalmae.data.phantom import generate_phantom
    from renalmae.explain.layers import cnn_layer, vit_layer
    from renalmae.explain.localisation import localise
    from renalmae.explain.scorecam import explain
    from renalmae.models.preprocess import to_model_input

    classes = ["normal", "utd", "mcdk"]
    train = generate_phantom(
        n, seed=seed, image_size=size, difficulty=0.0, class_fractions=(0.34, 0.33, 0.33)
    )
    test = generate_phantom(
        30, seed=seed + 1, image_size=size, difficulty=0.0, class_fractions=(0.0, 0.5, 0.5)
    )
    torch.manual_seed(seed)
    if model_kind == "vit":
        model = timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, in_chans=1, num_classes=3, img_size=size, patch_size=8,
            embed_dim=32, depth=2, num_heads=2, global_pool="avg",
        )  # fmt: skip
    else:
        model = DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), bn_size=2, num_classes=3, in_chans=1)
    inputs = to_model_input(torch.from_numpy(train.images))
    targets = torch.tensor([classes.index(label) for label in train.labels])
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], inputs[batch].flip(-1), inputs[batch])
            loss = torch.nn.functional.cross_entropy(model(images), targets[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    layer = vit_layer(model) if model_kind == "vit" else cnn_layer(model)
    test_targets = [classes.index(label) for label in test.labels]
    inputs = to_model_input(torch.from_numpy(test.images))
    maps = explain(model, inputs, test_targets, layer=layer, weighting=weighting).maps.numpy()
    ratios: dict[str, list[float]] = {}
    for index, label in enumerate(test.labels):
        ratios.setdefault(label, []).append(localise(maps[index], test.masks[index]).energy_ratio_vs_uniform)
    return ratios


def region_model(region, grid: tuple[int, int] = (8, 8), gain: float = 1.5):
    """A two-class model built by hand that uses only `region` (bool [H, W]): the logit of class 0 is
    `gain` × the mean model input inside the region, class 1's is 0. Its layer `features` gives Score-CAM
    one channel per cell of `grid` (1 on that cell, 0 elsewhere), so a faithful map is the region's cells."""
    import torch
    from torch import nn

    class OneHotCells(nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            cells = grid[0] * grid[1]
            eye = torch.eye(cells, device=inputs.device, dtype=inputs.dtype).view(cells, *grid)
            return eye.expand(len(inputs), -1, -1, -1) + 0 * inputs.mean()

    class RegionModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.tensor(float(gain)))
            self.register_buffer("region", torch.as_tensor(region, dtype=torch.float32))
            self.features = OneHotCells()

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            self.features(inputs)
            inside = (inputs[:, 0] * self.region).sum(dim=(-2, -1)) / self.region.sum()
            return torch.stack([self.gain * inside, torch.zeros_like(inside)], dim=1)

    return RegionModel().eval()


def lesion_images(count: int = 12, size: int = 64, radius: int = 8, seed: int = 0):
    """`count` uint8 images [N, H, W] with speckle on a bright field, a brighter disc lesion of `radius` at
    the centre, the lesion masks [N, H, W], the centre disc (bool) and a 4-px border band (bool)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    disc = (rows - size / 2 + 0.5) ** 2 + (cols - size / 2 + 0.5) ** 2 <= radius**2
    border = np.zeros((size, size), dtype=bool)
    border[:4], border[-4:], border[:, :4], border[:, -4:] = True, True, True, True
    images = np.clip(rng.normal(170, 20, (count, size, size)) + 70 * disc, 0, 255).astype(np.uint8)
    masks = np.repeat(disc[None], count, axis=0).astype(np.uint8)
    return images, masks, disc, border
