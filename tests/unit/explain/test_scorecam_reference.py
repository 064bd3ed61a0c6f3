"""Both channel weightings against a direct per-channel Score-CAM, and what each weighting does to weights.

The reference below is Score-CAM written out literally for one image: one masked forward pass per
channel, the weight of each channel from its score (Wang et al. 2020's increase of confidence over the
all-zero baseline, or grad-cam's softmax over channels), then the weighted sum. The batched
implementation must give the same maps for any batch size, on a ViT and on a DenseNet.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.densenet import DenseNet

from renalmae.explain.faithfulness import map_correlation
from renalmae.explain.layers import CamLayer, cnn_layer, vit_layer
from renalmae.explain.scorecam import cam_maps, channel_scores, channel_weights, explain, top_channels


def tiny_vit(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, in_chans=1, num_classes=num_classes, img_size=32,
        patch_size=8, embed_dim=24, depth=2, num_heads=2, global_pool="avg",
    )  # fmt: skip
    with torch.no_grad():  # non-degenerate norms, as after training (fresh LayerNorms give zero-mean tokens)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.5)
    return model.eval()


def tiny_densenet(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return DenseNet(
        growth_rate=4, block_config=(1, 1, 1, 1), bn_size=2, num_classes=num_classes, in_chans=1
    ).eval()


def speckle(count: int, size: int) -> torch.Tensor:
    return torch.rand(count, 1, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _scale(maps: torch.Tensor, eps: float) -> torch.Tensor:
    return (maps - maps.min()) / (maps.max() - maps.min() + eps)


@torch.no_grad()
def reference_map(model, layer: CamLayer, image: torch.Tensor, target: int, weighting: str) -> torch.Tensor:
    """Score-CAM of one image [1, C, H, W], channel by channel."""
    size = tuple(image.shape[-2:])
    captured = []
    handle = layer.modules[0].register_forward_hook(lambda _m, _i, output: captured.append(output))
    model(image)
    handle.remove()
    activations = layer.to_grid(captured[0], size)[0].float()  # [K, h, w]
    baseline = model(torch.zeros_like(image)).softmax(-1)[0, target]
    scores = []
    for channel in activations:
        mask = F.interpolate(channel[None, None], size=size, mode="bilinear", align_corners=False)
        scores.append(model(image * _scale(mask, 1e-8)).softmax(-1)[0, target])
    scores = torch.stack(scores)
    weights = scores.softmax(0) if weighting == "softmax" else scores - baseline
    cam = _scale((weights[:, None, None] * activations).sum(0).clamp_min(0), 1e-7)
    cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return _scale(cam.clamp_min(0), 1e-7)


CASES = {
    "vit": (tiny_vit, lambda model: vit_layer(model), 32),
    "densenet": (tiny_densenet, lambda model: cnn_layer(model, "features.denseblock3"), 64),
}


@pytest.mark.parametrize("weighting", ["score", "softmax"])
@pytest.mark.parametrize("family", sorted(CASES))
def test_batched_maps_equal_a_direct_per_channel_reference(family, weighting):
    build, layer_of, size = CASES[family]
    model = build()
    layer, images, targets = layer_of(model), speckle(2, size), [2, 0]
    ours = explain(model, images, targets, layer=layer, weighting=weighting, batch_size=7).maps
    for index, target in enumerate(targets):
        expected = reference_map(model, layer, images[index : index + 1], target, weighting)
        np.testing.assert_allclose(ours[index].numpy(), expected.numpy(), atol=1e-5, rtol=0)


def test_score_weights_are_the_increase_over_the_baseline_and_can_be_negative():
    model = tiny_vit()
    scores = channel_scores(model, speckle(1, 32), layer=vit_layer(model))
    target = torch.tensor([1])
    weights = channel_weights(scores, target, "score")[0]
    with torch.no_grad():
        baseline = model(torch.zeros(1, 1, 32, 32)).softmax(-1)[0, 1]
    np.testing.assert_allclose(
        weights.numpy(), (scores.masked_logits[0].softmax(-1)[:, 1] - baseline).numpy(), atol=1e-6
    )
    assert (
        weights.min() < 0 < weights.max()
    )  # channels that reveal evidence against the class count against it


def test_with_two_classes_the_score_weights_of_one_class_are_the_negatives_of_the_other():
    model = tiny_densenet(num_classes=2)
    scores = channel_scores(model, speckle(2, 64), layer=cnn_layer(model, "features.denseblock3"))
    first, second = (channel_weights(scores, torch.full((2,), c), "score") for c in (0, 1))
    np.testing.assert_allclose(first.numpy(), -second.numpy(), atol=1e-6)


def test_softmax_weights_of_probabilities_differ_by_at_most_a_factor_e():
    model = tiny_vit()
    scores = channel_scores(model, speckle(3, 32), layer=vit_layer(model))
    weights = channel_weights(scores, torch.tensor([0, 1, 2]), "softmax")
    assert float((weights.max(dim=1).values / weights.min(dim=1).values).max()) <= math.e + 1e-6


def test_score_maps_differ_between_classes_more_than_softmax_maps():
    model = tiny_vit()
    scores = channel_scores(model, speckle(4, 32), layer=vit_layer(model))
    correlation = {}
    for weighting in ("score", "softmax"):
        maps = [cam_maps(scores, torch.full((4,), c), weighting) for c in (0, 1)]
        correlation[weighting] = float(np.nanmean(map_correlation(*maps)))
    assert correlation["score"] < correlation["softmax"], correlation


def test_top_k_keeps_each_images_channels_of_largest_spatial_spread():
    activations = torch.zeros(2, 4, 3, 3)
    activations[0, 2, 0, 0] = 5.0  # image 0: channels 2 and 1 vary most
    activations[0, 1, 1, 1] = 1.0
    activations[1, 3, 2, 2] = 2.0  # image 1: channels 3 and 0
    activations[1, 0, 0, 1] = 1.0
    kept, index = top_channels(activations, 2)
    assert index.tolist() == [[1, 2], [0, 3]]
    assert torch.equal(kept[1, 1], activations[1, 3])
    everything, _ = top_channels(activations, 0)
    assert everything is activations


def test_top_k_with_every_channel_gives_the_full_map():
    model = tiny_densenet()
    layer = cnn_layer(model, "features.denseblock3")
    images = speckle(2, 64)
    full = explain(model, images, [0, 1], layer=layer).maps
    channels = channel_scores(model, images, layer=layer).layer_channels
    same = explain(model, images, [0, 1], layer=layer, channels=channels).maps
    np.testing.assert_allclose(same.numpy(), full.numpy(), atol=1e-6)


def briefly_trained_densenet() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny DenseNet (growth 8) trained 3 epochs on an easy 64-px phantom, and 8 fresh lesion images."""
    from renalmae.data.phantom import generate_phantom
    from renalmae.models.preprocess import to_model_input

    classes = ["normal", "utd", "mcdk"]
    torch.manual_seed(0)
    model = DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), bn_size=2, num_classes=3, in_chans=1)
    train = generate_phantom(192, seed=0, image_size=64, difficulty=0.0, class_fractions=(0.34, 0.33, 0.33))
    inputs, labels = to_model_input(torch.from_numpy(train.images)), [classes.index(x) for x in train.labels]
    optimiser = torch.optim.AdamW(model.parameters(), 2e-3)
    for _ in range(3):
        for start in range(0, len(inputs), 32):
            loss = F.cross_entropy(
                model(inputs[start : start + 32]), torch.tensor(labels[start : start + 32])
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    test = generate_phantom(8, seed=5, image_size=64, difficulty=0.0, class_fractions=(0.0, 0.5, 0.5))
    targets = torch.tensor([classes.index(label) for label in test.labels])
    return model.eval(), to_model_input(torch.from_numpy(test.images)), targets


def test_reduced_map_stays_close_to_the_full_map():
    """Faster Score-CAM's top quarter of denseblock2's channels against all of them, both weightings."""
    model, images, targets = briefly_trained_densenet()
    layer = cnn_layer(model, "features.denseblock2")  # 32 channels on an 8 x 8 grid
    full = channel_scores(model, images, layer=layer)
    reduced = channel_scores(model, images, layer=layer, channels=full.layer_channels // 4)
    correlation = {}
    for weighting in ("score", "softmax"):
        first, second = cam_maps(full, targets, weighting), cam_maps(reduced, targets, weighting)
        correlation[weighting] = float(np.nanmean(map_correlation(first, second)))
        difference = float((first - second).abs().mean())
        print(
            f"{weighting}: top 8 of 32 channels vs all: correlation {correlation[weighting]:.3f}, "
            f"|diff| {difference:.3f}"
        )
    assert correlation["score"] >= 0.85, (
        correlation
    )  # measured 0.94 (softmax 0.92) with torch 2.14 / timm 1.0
