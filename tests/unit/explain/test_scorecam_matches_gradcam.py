"""Our batched Score-CAM gives the maps of the `grad-cam` library's ScoreCAM, for the ViT and the DenseNet.

grad-cam's conventions are asked for explicitly: softmax channel weights and masks upsampled with
`align_corners=True` (the project's defaults are the paper's score weights and patch-centre geometry).
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from timm.models.densenet import DenseNet

from renalmae.errors import ModelError
from renalmae.explain.layers import cnn_layer, resolve_layer, vit_layer, vit_tokens_to_grid
from renalmae.explain.scorecam import explain, score_cam

GRADCAM = {"weighting": "softmax"}


def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        in_chans=1,
        num_classes=3,
        img_size=32,
        patch_size=8,
        embed_dim=24,
        depth=2,
        num_heads=2,
    )
    # Freshly initialised LayerNorms output zero-mean tokens, so a near-uniform weighting of them cancels
    # to ~1e-4 and the comparison would only measure rounding; a trained model's norms are not like that.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.5)
    return model.eval()


def tiny_densenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return DenseNet(growth_rate=4, block_config=(1, 1, 1, 1), bn_size=2, num_classes=3, in_chans=1).eval()


def speckle_images(count: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(count, 1, size, size, generator=generator)


def token_reshape(model, size: int):
    """grad-cam's one-argument reshape_transform: the project's token layout for a `size`-pixel input."""
    to_grid = vit_tokens_to_grid(model)
    return lambda tokens: to_grid(tokens, (size, size))


def gradcam_maps(model, module, images, targets, reshape=None, softmax=True) -> np.ndarray:
    make_target = ClassifierOutputSoftmaxTarget if softmax else ClassifierOutputTarget
    with ScoreCAM(model=model, target_layers=[module], reshape_transform=reshape) as cam:
        cam.batch_size = 64
        return cam(input_tensor=images, targets=[make_target(int(t)) for t in targets])


def test_vit_maps_match_gradcam_scorecam_within_1e4():
    model, images = tiny_vit(), speckle_images(3, 32)
    layer = vit_layer(model, "blocks.-1.norm1", align_corners=True)
    ours = explain(model, images, layer=layer, batch_size=20, **GRADCAM)
    reference = gradcam_maps(
        model, model.blocks[-1].norm1, images, ours.targets, reshape=token_reshape(model, 32)
    )
    assert ours.maps.shape == (3, 32, 32)
    np.testing.assert_allclose(ours.maps.numpy(), reference, atol=1e-4, rtol=0)


def test_vit_logit_scores_match_gradcam_classifier_output_target():
    model, images = tiny_vit(), speckle_images(2, 32)
    targets = [2, 0]
    layer = vit_layer(model, align_corners=True)
    ours = score_cam(model, images, targets, layer=layer, class_score="logit", batch_size=7, **GRADCAM)
    reference = gradcam_maps(
        model, model.blocks[-1].norm1, images, targets, reshape=token_reshape(model, 32), softmax=False
    )
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-4, rtol=0)


def test_densenet_maps_match_gradcam_scorecam_within_1e4():
    model, images = tiny_densenet(), speckle_images(2, 96)
    layer = cnn_layer(model, "features.denseblock4", align_corners=True)
    ours = explain(model, images, layer=layer, batch_size=16, **GRADCAM)
    reference = gradcam_maps(model, model.features.denseblock4, images, ours.targets)
    assert ours.maps.shape == (2, 96, 96)
    np.testing.assert_allclose(ours.maps.numpy(), reference, atol=1e-4, rtol=0)


def test_densenet_channels_last_gives_the_same_maps():
    model, images = tiny_densenet(), speckle_images(1, 96)
    plain = score_cam(model, images, [1], layer=cnn_layer(model))
    model_cl = tiny_densenet().to(memory_format=torch.channels_last)
    fast = score_cam(model_cl, images, [1], layer=cnn_layer(model_cl), channels_last=True)
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), atol=1e-4, rtol=0)


def test_maps_are_scaled_to_unit_range_per_image():
    model = tiny_vit()
    maps = score_cam(model, speckle_images(2, 32))
    for single in maps:
        assert single.min().item() == pytest.approx(0.0, abs=1e-6)
        assert single.max().item() == pytest.approx(1.0, abs=1e-5)


def test_default_target_is_the_predicted_class():
    model, images = tiny_vit(), speckle_images(4, 32)
    result = explain(model, images)
    with torch.no_grad():
        assert result.targets.tolist() == model(images).argmax(dim=-1).tolist()


def test_layer_paths_accept_negative_block_indices():
    model = tiny_vit()
    assert resolve_layer(model, "blocks.-1.norm1") is model.blocks[1].norm1


def test_an_unknown_layer_path_is_refused_naming_the_layers_there():
    with pytest.raises(ModelError, match="no 'norm9'.*norm1"):
        vit_layer(tiny_vit(), "blocks.-1.norm9")


def test_a_layer_the_forward_pass_never_uses_is_refused():
    model = tiny_densenet()
    unused = torch.nn.Identity()
    model.add_module("unused", unused)
    with pytest.raises(ModelError, match="not used"):
        score_cam(model, speckle_images(1, 96), layer=cnn_layer(model, "unused"))
