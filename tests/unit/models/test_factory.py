import json

import pytest
import torch
from modelkit import IMAGE_SIZE, tiny_params
from timm.models.vision_transformer import VisionTransformer

from renalmae.errors import ModelError
from renalmae.models import MaskedAutoencoderViT, build_from_spec, create_model, model_spec


def test_mae_is_built_around_a_timm_vit_encoder(params):
    mae = create_model("mae", params)
    assert isinstance(mae, MaskedAutoencoderViT)
    assert isinstance(mae.encoder, VisionTransformer)
    assert mae.encoder.num_classes == 0 and mae.encoder.in_chans == 1
    assert len(mae.encoder.blocks) == 2 and len(mae.decoder_blocks) == 1
    assert mae.mask_ratio == params.mae.mask_ratio


def test_vit_classifier_gives_one_logit_per_class(params):
    vit = create_model("vit", params, num_classes=3)
    assert isinstance(vit, VisionTransformer)
    assert vit(torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)).shape == (2, 3)


def test_vit_uses_finetune_drop_path(params):
    spec = model_spec("vit", tiny_params(finetune={"drop_path": 0.2}), num_classes=2)
    assert spec["kwargs"]["drop_path_rate"] == 0.2
    assert model_spec("mae", params)["kwargs"]["drop_path_rate"] == 0.0


def test_densenet_baseline_takes_one_channel_input(params):
    cnn = create_model("cnn", params, num_classes=2)
    assert cnn.features.conv0.in_channels == 1
    assert cnn(torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)).shape == (2, 2)


@pytest.mark.parametrize("kind", ["mae", "vit", "cnn"])
def test_spec_is_json_and_rebuilds_the_same_architecture(params, kind):
    spec = model_spec(kind, params, num_classes=2)
    rebuilt = build_from_spec(json.loads(json.dumps(spec)))
    original = create_model(kind, params, num_classes=2)
    shapes = {key: value.shape for key, value in original.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == shapes


def test_unknown_encoder_arch_is_refused_with_close_names():
    with pytest.raises(ModelError, match=r"unknown timm model 'vit_tiny_patch16_2244'.*vit_tiny_patch16_224"):
        create_model("vit", tiny_params(encoder={"arch": "vit_tiny_patch16_2244"}), num_classes=2)


def test_unknown_baseline_arch_is_refused():
    with pytest.raises(ModelError, match=r"baseline.arch: unknown timm model 'densenet1690'"):
        create_model("cnn", tiny_params(baseline={"arch": "densenet1690"}), num_classes=2)


def test_cnn_as_encoder_is_refused():
    with pytest.raises(ModelError, match="encoder.arch 'resnet18' is not a timm VisionTransformer"):
        create_model("mae", tiny_params(encoder={"arch": "resnet18"}))


def test_image_size_not_divisible_by_patch_size_is_refused():
    with pytest.raises(ModelError, match="data.image_size 36 is not divisible by encoder.patch_size 8"):
        create_model("mae", tiny_params(data={"image_size": 36}))


def test_embed_dim_not_divisible_by_heads_is_refused():
    with pytest.raises(ModelError, match="encoder.embed_dim 32 must be divisible by"):
        create_model("vit", tiny_params(encoder={"num_heads": 3}), num_classes=2)


@pytest.mark.parametrize("mask_ratio", [0.0, 1.0])
def test_mask_ratio_outside_zero_one_is_refused_at_build(params, mask_ratio):
    spec = model_spec("mae", params)
    spec["mae"]["mask_ratio"] = mask_ratio
    with pytest.raises(ModelError, match="mask_ratio must be strictly between 0 and 1"):
        build_from_spec(spec)


def test_classifier_without_num_classes_is_refused(params):
    with pytest.raises(ModelError, match="needs num_classes"):
        create_model("vit", params)


def test_unknown_model_kind_is_refused(params):
    with pytest.raises(ModelError, match="unknown model kind 'resnet'; use one of mae, vit, cnn"):
        create_model("resnet", params, num_classes=2)


def test_spec_without_kind_is_refused():
    with pytest.raises(ModelError, match="lacks kind / name / kwargs"):
        build_from_spec({"name": "vit_tiny_patch16_224"})
