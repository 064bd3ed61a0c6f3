"""Which tokens of a ViT layer are patches is read from the model and the layer's output, not assumed."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import timm
import torch

from renalmae.errors import ModelError
from renalmae.explain.layers import check_grid, vit_layer, vit_tokens_to_grid
from renalmae.explain.scorecam import explain


def tiny_vit(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = {
        "img_size": 32,
        "patch_size": 8,
        "embed_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "global_pool": "avg",
    }
    settings.update(options)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, in_chans=1, num_classes=2, **settings)
    return model.eval()


def images(count: int = 2) -> torch.Tensor:
    return torch.rand(count, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("options", "prefix"),
    [({}, 1), ({"reg_tokens": 4}, 5), ({"class_token": False}, 0)],
    ids=["class-token", "class-and-4-register-tokens", "no-prefix-tokens"],
)
def test_prefix_tokens_are_dropped_as_the_model_declares_them(options, prefix):
    model = tiny_vit(**options)
    assert model.num_prefix_tokens == prefix
    tokens = torch.randn(2, prefix + 16, 16)
    grid = vit_tokens_to_grid(model)(tokens, (32, 32))
    expected = tokens[:, prefix:].reshape(2, 4, 4, 16).permute(0, 3, 1, 2)
    assert torch.equal(grid, expected)
    maps = explain(model, images(), layer=vit_layer(model)).maps
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()


def test_a_layer_before_the_prefix_tokens_are_joined_works():
    model = tiny_vit(reg_tokens=2)
    maps = explain(model, images(), layer=vit_layer(model, "patch_embed")).maps  # 16 tokens, no prefix
    assert maps.shape == (2, 32, 32)


def test_a_grid_shaped_layer_output_works():
    model = tiny_vit(dynamic_img_size=True)  # patch_embed then outputs [B, h, w, C]
    with torch.no_grad():
        assert model.patch_embed(images()).shape == (2, 4, 4, 16)
    maps = explain(model, images(), layer=vit_layer(model, "patch_embed")).maps
    assert maps.shape == (2, 32, 32)


def test_a_pooled_layer_is_refused_naming_it():
    model = tiny_vit()
    with pytest.raises(ModelError, match="layer 'fc_norm' outputs shape \\(2, 16\\)"):
        explain(model, images(), layer=vit_layer(model, "fc_norm"))


def test_a_token_count_that_fits_neither_layout_is_refused_naming_the_layer():
    to_grid = vit_tokens_to_grid(tiny_vit(), "blocks.0.attn")
    with pytest.raises(
        ModelError, match="layer 'blocks.0.attn' outputs 19 tokens.*4 × 4 patches and 1 prefix"
    ):
        to_grid(torch.randn(1, 19, 16), (32, 32))


def test_a_coarse_grid_is_reported_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="renalmae.explain.layers"):
        warning = check_grid((2, 2), "features.denseblock4", min_grid=7)
    assert "'features.denseblock4' gives a 2 × 2 grid, below 7 × 7" in warning
    assert warning in caplog.text
    assert check_grid((8, 8), "features.denseblock2", min_grid=7) is None


def test_a_cnn_layer_grid_and_channels_are_reported():
    from timm.models.densenet import DenseNet

    from renalmae.explain.layers import cnn_layer

    torch.manual_seed(0)
    model = DenseNet(growth_rate=4, block_config=(1, 1, 1, 1), bn_size=2, num_classes=2, in_chans=1).eval()
    image = torch.rand(1, 1, 64, 64)
    result = explain(model, image, layer=cnn_layer(model, "features.denseblock2"), channels=5)
    assert result.grid == (8, 8) and result.channels == 5 and result.layer_channels > 5
    assert np.isfinite(result.maps.numpy()).all()
