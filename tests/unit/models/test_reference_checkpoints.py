"""Published checkpoints give the reference model's features on the same greyscale image.

The references are random checkpoints in the published layouts: facebookresearch/mae `models_mae.py`
(`mae_vit_base_patch16_dec512d8b`, here at a tiny size; USF-MAE is a bare state dict of it, the ImageNet
MAE release `{"model": state_dict}`) and timm's `densenet169` (what `timm/densenet169.tv_in1k` holds). The
reference sees the grey image replicated to RGB and normalised with ImageNet mean / std, as those models
were trained; our 1-channel models see `to_model_input` of the same uint8 image.
"""

import pytest
import timm
import torch
import torch.nn.functional as F
from modelkit import IMAGE_SIZE, tiny_params

from renalmae.models import (
    GREY_MEAN,
    GREY_STD,
    MaskedAutoencoderViT,
    create_model,
    load_init_checkpoint,
    to_model_input,
)
from renalmae.models.checkpoints import INPUT_NORMALISATIONS

DEPTH, DECODER_DEPTH, WIDTH, DECODER_WIDTH, PATCH = 2, 1, 32, 32, 8
BLOCK_KEYS = [
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
]  # fmt: skip


def mae_reference_keys() -> list[str]:
    """The state-dict keys of facebookresearch/mae `MaskedAutoencoderViT` (models_mae.py), in its order."""
    encoder = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    encoder += [f"blocks.{i}.{key}" for i in range(DEPTH) for key in BLOCK_KEYS] + [
        "norm.weight",
        "norm.bias",
    ]
    decoder = ["mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_embed.bias"]
    decoder += [f"decoder_blocks.{i}.{key}" for i in range(DECODER_DEPTH) for key in BLOCK_KEYS]
    decoder += ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    return encoder + decoder


def random_reference_mae_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random 3-channel MAE checkpoint in the models_mae layout; every tensor random (norms included)."""
    reference = timm.create_model(
        "vit_tiny_patch16_224", img_size=IMAGE_SIZE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH,
        num_heads=2, in_chans=3, num_classes=0, global_pool="",
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    grid = (IMAGE_SIZE // PATCH) ** 2 + 1
    decoder_shapes = {
        "mask_token": (1, 1, DECODER_WIDTH), "decoder_pos_embed": (1, grid, DECODER_WIDTH),
        "decoder_embed.weight": (DECODER_WIDTH, WIDTH), "decoder_embed.bias": (DECODER_WIDTH,),
        "decoder_norm.weight": (DECODER_WIDTH,), "decoder_norm.bias": (DECODER_WIDTH,),
        "decoder_pred.weight": (PATCH * PATCH * 3, DECODER_WIDTH), "decoder_pred.bias": (PATCH * PATCH * 3,),
    }  # fmt: skip
    shapes = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    block = {
        key.removeprefix("blocks.0."): shape for key, shape in shapes.items() if key.startswith("blocks.0.")
    }
    shapes.update(
        {f"decoder_blocks.{i}.{key}": shape for i in range(DECODER_DEPTH) for key, shape in block.items()}
    )
    shapes.update(decoder_shapes)
    assert sorted(shapes) == sorted(mae_reference_keys())
    return {key: 0.3 * torch.randn(shapes[key], generator=generator) for key in mae_reference_keys()}


def reference_encoder(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """models_mae `forward_encoder` without masking is timm's ViT `forward_features`: patch embed, class
    token and positions, blocks, final norm. Loaded strictly from the checkpoint's encoder tensors."""
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=IMAGE_SIZE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH,
        num_heads=2, in_chans=3, num_classes=0, global_pool="",
    )  # fmt: skip
    vit.load_state_dict(
        {key: value for key, value in state.items() if not key.startswith(("decoder", "mask"))}
    )
    return vit.eval()


def grey_images(size: int = IMAGE_SIZE, count: int = 3) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )


def reference_input(images: torch.Tensor, normalisation: str = "imagenet") -> torch.Tensor:
    """What the published models saw: the grey image as RGB, each channel normalised with mean / std."""
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in INPUT_NORMALISATIONS[normalisation])
    return (images.float().div(255).unsqueeze(1).expand(-1, 3, -1, -1) - mean) / std


@pytest.mark.parametrize("wrapper", ["usf-mae (bare state dict)", "imagenet mae ({'model': state dict})"])
@pytest.mark.parametrize("kind", ["mae", "vit"])
def test_published_mae_checkpoint_gives_the_reference_tokens(params, tmp_path, wrapper, kind):
    state = random_reference_mae_state()
    torch.save(state if wrapper.startswith("usf") else {"model": state, "epoch": 799}, tmp_path / "mae.pth")
    model = create_model(kind, params, num_classes=2).eval()
    report = load_init_checkpoint(model, tmp_path / "mae.pth")
    encoder = model.encoder if kind == "mae" else model
    images = grey_images()
    with torch.no_grad():
        ours = encoder.forward_features(to_model_input(images))
        reference = reference_encoder(state).forward_features(reference_input(images))
    difference = (ours - reference).abs().max().item()
    print(f"{kind} from {wrapper}: max |our tokens - reference tokens| = {difference:.3e}")
    assert difference < 1e-4, difference
    assert any("normalisation folded in" in entry for entry in report.adapted)
    if kind == "mae":  # a 3-channel pixel predictor cannot predict 1-channel patches
        assert sorted(report.reinitialised) == ["decoder_pred.bias", "decoder_pred.weight"]
    else:
        assert (
            sorted(report.missing) == ["head.bias", "head.weight"]
            and "decoder_pred.weight" in report.unexpected
        )


def test_without_the_fold_the_tokens_would_differ(params, tmp_path):
    """The check above can fail: summing the colour weights (the old adaptation) is off by far more."""
    state = random_reference_mae_state()
    weight = state["patch_embed.proj.weight"]
    summed = {**state, "patch_embed.proj.weight": weight.sum(dim=1, keepdim=True)}
    torch.save(summed, tmp_path / "summed.pth")
    model = create_model("vit", params, num_classes=2).eval()
    load_init_checkpoint(model, tmp_path / "summed.pth")
    images = grey_images()
    with torch.no_grad():
        ours = model.forward_features(to_model_input(images))
        reference = reference_encoder(state).forward_features(reference_input(images))
    assert (ours - reference).abs().max().item() > 1e-2


def random_reference_densenet(seed: int = 0) -> torch.nn.Module:
    """timm densenet169 (3 channels) with random weights and random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = timm.create_model("densenet169", in_chans=3, num_classes=2)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
    return model.eval()


def densenet169_from(reference: torch.nn.Module, path, normalisation: str = "imagenet") -> torch.nn.Module:
    torch.save(reference.state_dict(), path)
    cnn = create_model("cnn", tiny_params(baseline={"arch": "densenet169"}), num_classes=2)
    report = load_init_checkpoint(cnn, path, "baseline.init_checkpoint", normalisation)
    assert report.loaded == report.total and not report.missing, report
    assert "features.norm0.running_mean: - normalisation offset" in report.adapted
    return cnn.eval()


def stem(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """conv0 and norm0's normalisation (before its ReLU, which would hide the border's linear offset)."""
    norm = model.features.norm0
    features = model.features.conv0(inputs)
    return F.batch_norm(
        features, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
    )


def test_densenet169_stem_equals_the_reference_inside_and_the_padding_share_at_the_border(tmp_path):
    """conv0 (7×7, stride 2, zero padding 3) + norm0 (before its ReLU). Away from the border the folded
    stem equals the reference. Where the kernel reads padding, the reference reads 0 in ImageNet units (a
    different grey per channel) and we read 0 in ours, so the outputs differ by exactly the offset share
    of the padded taps times norm0's scale; the test predicts that difference tap by tap."""
    reference = random_reference_densenet()
    ours = densenet169_from(reference, tmp_path / "densenet169.pth")
    images = grey_images(size=64)
    with torch.no_grad():
        ours_stem = stem(ours, to_model_input(images))
        reference_stem = stem(reference, reference_input(images))
    conv, norm = reference.features.conv0, reference.features.norm0
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in INPUT_NORMALISATIONS["imagenet"])
    tap_offset = (conv.weight / std * (GREY_MEAN - mean)).sum(dim=1, keepdim=True)  # [64, 1, 7, 7]
    inside = F.conv2d(torch.ones(1, 1, 64, 64), tap_offset, stride=2, padding=3)  # share of the image taps
    padded_share = tap_offset.sum(dim=(1, 2, 3)).view(1, -1, 1, 1) - inside
    scale = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).view(1, -1, 1, 1)
    predicted = (padded_share * scale).expand_as(ours_stem)
    interior = (slice(None), slice(None), slice(2, 31), slice(2, 31))  # 7×7 windows inside the image
    interior_difference = (ours_stem - reference_stem)[interior].abs().max().item()
    border_difference = (ours_stem - reference_stem).abs().max().item()
    print(
        f"densenet169 stem: interior max |Δ| = {interior_difference:.3e}; border max |Δ| = "
        f"{border_difference:.3e}, predicted padding share max = {predicted.abs().max().item():.3e}"
    )
    with torch.no_grad():  # what the border does downstream: reported, not bounded by this test
        logits = (ours(to_model_input(images)) - reference(reference_input(images))).abs().max().item()
    print(f"densenet169 whole network (imagenet normalisation): max |Δ logits| = {logits:.3e}")
    assert interior_difference < 1e-4
    assert predicted[interior].abs().max() < 1e-5 and predicted.abs().max() > 1e-2
    torch.testing.assert_close(ours_stem - reference_stem, predicted, rtol=0, atol=1e-4)


def test_densenet169_with_mean_equal_to_ours_matches_the_reference_everywhere(tmp_path):
    """With timm's inception constants (mean 0.5 = GREY_MEAN) the fold has no offset, so padding agrees and
    the whole network, border included, gives the reference's logits."""
    reference = random_reference_densenet(seed=1)
    ours = densenet169_from(reference, tmp_path / "densenet169.pth", normalisation="inception")
    images = grey_images(size=64)
    with torch.no_grad():
        difference = (
            (ours(to_model_input(images)) - reference(reference_input(images, "inception"))).abs().max()
        )
    print(f"densenet169 (inception normalisation): max |our logits - reference logits| = {difference:.3e}")
    assert difference < 1e-4


def test_usf_mae_pixel_predictor_gives_the_reference_reconstruction(tmp_path):
    """USF-MAE trains with pixel loss (norm_pix_loss false): its RGB pixel predictor is folded, so on the
    same image and mask our MAE predicts the mean of the reference's three channel predictions, in our
    units. (The reference forward is this project's MAE with a 3-channel encoder: the same code as
    models_mae, tested elsewhere against it.)"""
    state = random_reference_mae_state(seed=2)
    torch.save(state, tmp_path / "usf_mae.pth")
    params = tiny_params(mae={"norm_pix_loss": False})
    ours = create_model("mae", params).eval()
    report = load_init_checkpoint(ours, tmp_path / "usf_mae.pth")
    assert any(entry.startswith("decoder_pred: (192, 32)→(64, 32)") for entry in report.adapted)
    assert not report.reinitialised and not report.missing
    encoder = timm.create_model(
        "vit_tiny_patch16_224", img_size=IMAGE_SIZE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH,
        num_heads=2, in_chans=3, num_classes=0, global_pool="avg", fc_norm=False,
    )  # fmt: skip
    reference = MaskedAutoencoderViT(encoder, DECODER_WIDTH, DECODER_DEPTH, 2, norm_pix_loss=False).eval()
    decoder_keys = ("decoder", "mask_token")
    reference.load_state_dict(
        {k if k.startswith(decoder_keys) else f"encoder.{k}": v for k, v in state.items()}
    )
    images = grey_images()
    with torch.no_grad():
        torch.manual_seed(0)
        _, reference_pred, reference_mask = reference(reference_input(images))
        torch.manual_seed(0)
        _, ours_pred, ours_mask = ours(to_model_input(images))
    mean, std = (torch.tensor(values) for values in INPUT_NORMALISATIONS["imagenet"])
    grey_levels = reference_pred.view(*reference_pred.shape[:2], -1, 3) * std + mean  # channel fastest
    expected = ((grey_levels - GREY_MEAN) / GREY_STD).mean(dim=-1)
    difference = (ours_pred - expected).abs().max().item()
    print(f"usf-mae pixel predictor: max |our prediction - reference prediction| = {difference:.3e}")
    assert torch.equal(ours_mask, reference_mask) and difference < 1e-4
