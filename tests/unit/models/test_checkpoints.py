import argparse

import pytest
import timm
import torch
from modelkit import IMAGE_SIZE, tiny_params
from safetensors.torch import save_file

from renalmae.errors import ModelError
from renalmae.models import (
    MaskedAutoencoderViT,
    build_from_spec,
    create_model,
    encoder_state_dict,
    load_encoder_into_vit,
    load_init_checkpoint,
    model_spec,
)

VIT_SIZE = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


def timm_vit(in_chans: int = 1, img_size: int = IMAGE_SIZE, num_classes: int = 0, **size) -> torch.nn.Module:
    """A timm ViT as a published checkpoint would hold it (3 channels, other grids, other heads)."""
    kwargs = {"fc_norm": False, **VIT_SIZE, **size, "img_size": img_size, "in_chans": in_chans}
    return timm.create_model("vit_tiny_patch16_224", global_pool="avg", num_classes=num_classes, **kwargs)


def test_mae_checkpoint_loads_fully_into_an_mae(params, tmp_path):
    source = create_model("mae", params)
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "mae.pth")
    target = create_model("mae", params)
    report = load_init_checkpoint(target, tmp_path / "mae.pth")
    assert report.loaded == report.total and not (report.missing or report.unexpected or report.adapted)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_published_mae_layout_maps_onto_the_encoder(params, tmp_path):
    """facebookresearch/mae checkpoints name encoder keys without a prefix (`blocks.0...`, `norm.weight`)."""
    source = create_model("mae", params)
    published = {key.removeprefix("encoder."): value for key, value in source.state_dict().items()}
    assert "blocks.0.attn.qkv.weight" in published and "decoder_pred.weight" in published
    torch.save({"model": published}, tmp_path / "mae_pretrain.pth")
    target = create_model("mae", params)
    report = load_init_checkpoint(target, tmp_path / "mae_pretrain.pth")
    assert report.loaded == report.total
    assert torch.equal(target.encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight)


def test_mae_checkpoint_into_classifier_ignores_decoder_and_reports_missing_head(params, tmp_path):
    torch.save({"model": create_model("mae", params).state_dict()}, tmp_path / "mae.pth")
    vit = create_model("vit", params, num_classes=3)
    report = load_init_checkpoint(vit, tmp_path / "mae.pth")
    assert sorted(report.missing) == ["head.bias", "head.weight"]
    assert "mask_token" in report.unexpected and "decoder_pred.weight" in report.unexpected
    text = str(report)
    assert f"loaded {report.total - 2}/{report.total} tensors" in text
    assert (
        "missing (kept at init; the new classifier head, as expected): head.* (2)" in text
        and "decoder_blocks.*" in text
    )


def test_training_checkpoint_with_its_argparse_namespace_loads(params, tmp_path):
    state = create_model("mae", params).state_dict()
    torch.save({"model": state, "args": argparse.Namespace(mask_ratio=0.75)}, tmp_path / "checkpoint-799.pth")
    report = load_init_checkpoint(create_model("mae", params), tmp_path / "checkpoint-799.pth")
    assert report.loaded == report.total


def test_training_checkpoint_with_numpy_scalars_and_arrays_in_its_args_loads(params, tmp_path):
    """Issue 26 kind 8: training scripts save args holding numpy scalars, dtypes and arrays."""
    import numpy as np

    args = {"lr": np.float64(1.5e-4), "epochs": np.int64(800), "amp": np.bool_(True), "s": np.float32(0.5),
            "mean": np.array([0.485, 0.456, 0.406]), "dtype": np.dtype("float16")}  # fmt: skip
    state = create_model("mae", params).state_dict()
    torch.save({"model": state, "args": args, "namespace": argparse.Namespace(**args)}, tmp_path / "ckpt.pth")
    report = load_init_checkpoint(create_model("mae", params), tmp_path / "ckpt.pth")
    assert report.loaded == report.total


class SavedConfig:  # a training script's own class, pickled into its checkpoint
    def __init__(self) -> None:
        self.note = "x" * 300


def test_checkpoint_holding_code_names_every_refused_global_in_full(params, tmp_path):
    state = create_model("mae", params).state_dict()
    torch.save({"model": state, "config": SavedConfig()}, tmp_path / "ckpt.pth")
    with pytest.raises(ModelError) as error:
        load_init_checkpoint(create_model("mae", params), tmp_path / "ckpt.pth")
    message = str(error.value)
    assert f"{__name__}.SavedConfig" in message and "ckpt.pth" in message
    assert "state_dict()" in message  # the fix


def test_safetensors_checkpoint_loads(params, tmp_path):
    source = create_model("vit", params, num_classes=2)
    save_file(
        {key: value.contiguous() for key, value in source.state_dict().items()}, tmp_path / "vit.safetensors"
    )
    target = create_model("vit", params, num_classes=2).eval()
    report = load_init_checkpoint(target, tmp_path / "vit.safetensors")
    assert report.loaded == report.total
    images = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(target(images), source.eval()(images))


def test_three_channel_checkpoint_is_folded_to_greyscale(params, tmp_path):
    colour = timm_vit(in_chans=3).eval()
    torch.save(colour.state_dict(), tmp_path / "rgb_vit.pth")
    grey = create_model("vit", params, num_classes=2).eval()
    report = load_init_checkpoint(grey, tmp_path / "rgb_vit.pth")
    assert report.adapted == [
        "patch_embed.proj.weight: (32, 3, 8, 8)→(32, 1, 8, 8) "
        "(RGB-replicated greyscale, imagenet normalisation folded in)",
        "patch_embed.proj.bias: + normalisation offset",
    ]


def test_three_channel_densenet_checkpoint_is_adapted(tmp_path):
    params = tiny_params()
    torch.save({"state_dict": timm.create_model("densenet121", in_chans=3).state_dict()}, tmp_path / "dn.pth")
    cnn = create_model("cnn", params, num_classes=2)
    report = load_init_checkpoint(cnn, tmp_path / "dn.pth", param_key="baseline.init_checkpoint")
    assert [entry.split(":")[0] for entry in report.adapted] == [
        "features.conv0.weight",
        "features.norm0.running_mean",
    ]
    assert sorted(report.reinitialised) == ["classifier.bias", "classifier.weight"]
    assert report.loaded == report.total - 2


def test_position_embeddings_are_resampled_from_another_grid(params, tmp_path):
    torch.save(timm_vit(img_size=2 * IMAGE_SIZE).state_dict(), tmp_path / "vit64.pth")
    vit = create_model("vit", params, num_classes=2)
    report = load_init_checkpoint(vit, tmp_path / "vit64.pth")
    assert "pos_embed: (1, 65, 32)→(1, 17, 32)" in report.adapted


def test_head_with_another_class_count_is_reinitialised(params, tmp_path):
    torch.save(create_model("vit", params, num_classes=5).state_dict(), tmp_path / "vit5.pth")
    report = load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "vit5.pth")
    assert sorted(report.reinitialised) == ["head.bias", "head.weight"]
    assert "re-initialised (head shape differs): head.* (2)" in str(report)


def test_checkpoint_of_another_model_size_is_refused(params, tmp_path):
    torch.save(timm_vit(embed_dim=64, num_heads=4).state_dict(), tmp_path / "wider.pth")
    with pytest.raises(ModelError, match=r"wider.pth does not fit this model.*checkpoint \(1, 17, 64\)"):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "wider.pth")


def test_checkpoint_of_another_architecture_is_refused(params, tmp_path):
    torch.save(timm.create_model("test_resnet", in_chans=1).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ModelError, match=r"resnet.pth does not fit this model: it lacks \d+ model tensors"):
        load_init_checkpoint(create_model("mae", params), tmp_path / "resnet.pth")


def test_missing_checkpoint_file_names_the_param_to_fix(params, tmp_path):
    with pytest.raises(ModelError, match=r"absent.pth not found; set baseline.init_checkpoint"):
        load_init_checkpoint(
            create_model("vit", params, 2), tmp_path / "absent.pth", "baseline.init_checkpoint"
        )


def test_unreadable_checkpoint_file_is_refused(params, tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint .*broken.pth"):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "broken.pth")


def test_checkpoint_without_tensors_is_refused(params, tmp_path):
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(ModelError, match="empty.pth holds no tensors"):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "empty.pth")


def test_pretrained_encoder_hands_off_to_the_classifier_with_identical_features(params):
    mae = create_model("mae", params).eval()
    vit = create_model("vit", params, num_classes=3).eval()
    report = load_encoder_into_vit(vit, encoder_state_dict(mae))
    assert sorted(report.missing) == ["head.bias", "head.weight"] and not report.unexpected
    images = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    tokens = vit.forward_features(images)
    torch.testing.assert_close(tokens, mae.encoder.forward_features(images), rtol=0, atol=0)
    torch.testing.assert_close(vit.forward_head(tokens, pre_logits=True), mae.encoder(images), rtol=0, atol=0)


def test_three_channel_mae_with_its_decoder_loads_into_the_greyscale_mae(params, tmp_path):
    """A published colour MAE (visualisation checkpoints keep the decoder): pixel head is re-initialised."""
    spec = model_spec("mae", params)
    colour = MaskedAutoencoderViT(timm_vit(in_chans=3), **spec["mae"])
    torch.save({"model": colour.state_dict()}, tmp_path / "mae_visualize.pth")
    grey = build_from_spec(spec)
    report = load_init_checkpoint(grey, tmp_path / "mae_visualize.pth")
    assert [entry.split(":")[0] for entry in report.adapted] == [
        "encoder.patch_embed.proj.weight",
        "encoder.patch_embed.proj.bias",
    ]
    assert sorted(report.reinitialised) == ["decoder_pred.bias", "decoder_pred.weight"]
    assert report.loaded == report.total - 2


def test_fine_tuned_checkpoint_with_post_pooling_fc_norm_is_refused(params, tmp_path):
    """MAE fine-tuning (models_vit, global_pool) drops `norm` and normalises the pooled token (`fc_norm`):
    loading that into our per-token `norm` would change every token, so it is refused."""
    fine_tuned = timm_vit(fc_norm=None, num_classes=2)  # timm's default for avg pooling: norm after pooling
    assert "fc_norm.weight" in fine_tuned.state_dict() and "norm.weight" not in fine_tuned.state_dict()
    torch.save({"model": fine_tuned.state_dict()}, tmp_path / "finetuned.pth")
    with pytest.raises(
        ModelError, match=r"finetuned.pth is a fine-tuned ViT: its `fc_norm` normalises the pooled"
    ):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "finetuned.pth")


def _split_qkv_bias(state: dict) -> dict:
    """BEiT / data2vec layout: `q_bias` and `v_bias` instead of `qkv.bias` (their key has no bias)."""
    converted = {}
    for key, value in state.items():
        if key.endswith("attn.qkv.bias"):
            query, key_bias, value_bias = value.chunk(3)
            assert not key_bias.any()
            block = key.removesuffix(".qkv.bias")
            converted[f"{block}.q_bias"], converted[f"{block}.v_bias"] = query, value_bias
        else:
            converted[key] = value
    return converted


def _random_biases_with_zero_key_bias(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for block in model.blocks:
            query, key_bias, value_bias = block.attn.qkv.bias.chunk(3)
            query.normal_(), key_bias.zero_(), value_bias.normal_()


def test_separate_q_and_v_biases_map_exactly_onto_qkv_bias(params, tmp_path):
    source = create_model("vit", params, num_classes=2).eval()
    _random_biases_with_zero_key_bias(source)
    torch.save({"model": _split_qkv_bias(source.state_dict())}, tmp_path / "beit_layout.pth")
    target = create_model("vit", params, num_classes=2).eval()
    report = load_init_checkpoint(target, tmp_path / "beit_layout.pth")
    assert report.loaded == report.total
    assert report.adapted == ["2 × attn.q_bias + attn.v_bias → attn.qkv.bias (zero key bias)"]
    images = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(target(images), source(images), rtol=0, atol=0)


def test_q_bias_without_v_bias_is_refused(params, tmp_path):
    state = _split_qkv_bias({**create_model("vit", params, num_classes=2).state_dict()})
    state = {key: value for key, value in state.items() if not key.endswith("v_bias")}
    torch.save(state, tmp_path / "half_bias.pth")
    with pytest.raises(
        ModelError, match=r"lacks 2 model tensors \(blocks.\* \(2\)\).*2 of its tensors have no place"
    ):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "half_bias.pth")


def test_encoder_prefixed_layout_loads_and_reports_its_decoder(params, tmp_path):
    """Codebases that nest the encoder (`encoder.blocks.0...`, DDP's `module.`) beside a decoder."""
    source = create_model("mae", params)
    state = {f"module.{key}": value for key, value in source.state_dict().items()}
    assert "module.encoder.blocks.0.attn.qkv.weight" in state
    torch.save({"state_dict": state}, tmp_path / "nested.pth")
    vit = create_model("vit", params, num_classes=2)
    report = load_init_checkpoint(vit, tmp_path / "nested.pth")
    assert report.loaded == report.total - 2 and sorted(report.missing) == ["head.bias", "head.weight"]
    assert "decoder_pred.weight" in report.unexpected and "mask_token" in report.unexpected
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, source.encoder.blocks[1].mlp.fc2.weight)


def test_encoder_only_mae_release_loads_into_the_mae_and_keeps_its_decoder_at_init(params, tmp_path):
    """`mae_pretrain_vit_base.pth` holds the encoder only: the decoder is replaceable and reported."""
    source = create_model("mae", params)
    torch.save({"model": encoder_state_dict(source)}, tmp_path / "enc.pth")
    report = load_init_checkpoint(create_model("mae", params), tmp_path / "enc.pth")
    assert report.missing and all(key.startswith(("decoder", "mask_token")) for key in report.missing)
    assert (
        "missing (kept at init): mask_token, decoder_pos_embed, decoder_embed.* (2), decoder_blocks.*"
        in str(report)
    )


def test_checkpoint_missing_an_encoder_block_is_refused(params, tmp_path):
    state = {
        key: v for key, v in create_model("vit", params, 2).state_dict().items() if "blocks.1." not in key
    }
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(
        ModelError, match=r"short.pth does not fit this model: it lacks 12 model tensors \(blocks"
    ):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "short.pth")


def test_checkpoint_with_layer_scale_is_refused(params, tmp_path):
    """A tensor the model cannot hold (here layer scale) would be silently dropped: refused instead."""
    state = create_model("vit", params, num_classes=2).state_dict()
    state["blocks.0.ls1.gamma"] = torch.ones(32)
    torch.save(state, tmp_path / "layer_scale.pth")
    with pytest.raises(
        ModelError, match=r"1 of its tensors have no place in this model \(blocks.0.ls1.gamma\)"
    ):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "layer_scale.pth")


def test_unknown_input_normalisation_is_refused(params, tmp_path):
    torch.save(create_model("vit", params, 2).state_dict(), tmp_path / "vit.pth")
    with pytest.raises(ModelError, match=r"unknown input normalisation 'clip' for pretrain.init_checkpoint"):
        load_init_checkpoint(create_model("vit", params, 2), tmp_path / "vit.pth", normalisation="clip")


def test_truncated_safetensors_checkpoint_is_refused(params, tmp_path):
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ModelError, match="cannot read checkpoint .*cut.safetensors as safetensors"):
        load_init_checkpoint(create_model("vit", params, num_classes=2), tmp_path / "cut.safetensors")
