import pytest
import torch
from modelkit import IMAGE_SIZE, NUM_PATCHES, PATCH_SIZE

from renalmae.models import create_model
from renalmae.models.mae import sincos_pos_embed


def test_forward_returns_loss_prediction_and_mask_of_the_right_shapes(params, images):
    mae = create_model("mae", params)
    loss, pred, mask = mae(images)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (len(images), NUM_PATCHES, PATCH_SIZE**2)
    assert mask.shape == (len(images), NUM_PATCHES)


@pytest.mark.parametrize("mask_ratio", [0.25, 0.75, 0.9])
def test_mask_ratio_sets_the_number_of_visible_tokens(params, images, mask_ratio):
    mae = create_model("mae", params)
    latent, mask, _ = mae.forward_encoder(images, mask_ratio)
    visible = int(NUM_PATCHES * (1 - mask_ratio))
    assert latent.shape[1] == visible + 1  # + class token
    assert torch.equal(mask.sum(dim=1), torch.full((len(images),), float(NUM_PATCHES - visible)))


def test_each_sample_gets_its_own_random_mask(params, images):
    mae = create_model("mae", params)
    _, _, mask = mae(images)
    assert len({tuple(row.tolist()) for row in mask}) > 1


def test_loss_decreases_over_a_few_steps(params, images):
    torch.manual_seed(0)
    mae = create_model("mae", params)
    optimizer = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        torch.manual_seed(1)  # the same mask every step: the fall is learning, not a luckier mask
        loss, _, _ = mae(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_sincos_position_embeddings_are_fixed(params, images):
    mae = create_model("mae", params)
    before = (mae.encoder.pos_embed.clone(), mae.decoder_pos_embed.clone())
    optimizer = torch.optim.SGD([p for p in mae.parameters() if p.requires_grad], lr=1.0)
    mae(images)[0].backward()
    optimizer.step()
    assert not mae.encoder.pos_embed.requires_grad and not mae.decoder_pos_embed.requires_grad
    assert torch.equal(mae.encoder.pos_embed, before[0]) and torch.equal(mae.decoder_pos_embed, before[1])
    torch.testing.assert_close(mae.encoder.pos_embed, sincos_pos_embed(32, IMAGE_SIZE // PATCH_SIZE))


def test_sincos_table_has_a_zero_class_row_and_distinct_positions():
    table = sincos_pos_embed(16, 4)[0]
    assert table.shape == (17, 16)
    assert torch.equal(table[0], torch.zeros(16))
    assert torch.cdist(table[1:], table[1:]).add(torch.eye(16)).min() > 0


def test_patchify_then_unpatchify_is_the_identity(params, images):
    mae = create_model("mae", params)
    patches = mae.patchify(images)
    assert patches.shape == (len(images), NUM_PATCHES, PATCH_SIZE**2)
    torch.testing.assert_close(patches[0, 0], images[0, 0, :PATCH_SIZE, :PATCH_SIZE].flatten())
    assert torch.equal(mae.unpatchify(patches), images)


def test_figure_images_keep_visible_patches_and_fill_masked_ones(params, images):
    mae = create_model("mae", params)
    _, pred, mask = mae(images)
    panels = mae.reconstruction_images(images, pred, mask)
    assert set(panels) == {"original", "masked", "reconstruction", "pasted"}
    assert all(panel.shape == images.shape for panel in panels.values())
    visible = (1 - mask).bool()
    torch.testing.assert_close(mae.patchify(panels["pasted"])[visible], mae.patchify(images)[visible])
    assert not torch.allclose(mae.patchify(panels["pasted"])[~visible], mae.patchify(images)[~visible])


def test_forward_and_backward_run_under_bf16_autocast(params, images):
    mae = create_model("mae", params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, _ = mae(images)
    assert pred.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(mae.encoder.patch_embed.proj.weight.grad).all()


@pytest.mark.slow
def test_mae_compiles_with_torch_compile(params, images):
    mae = create_model("mae", params)
    compiled = torch.compile(mae, fullgraph=True)  # fullgraph: no graph break from Python control flow
    torch.manual_seed(0)
    eager_loss, _, _ = mae(images)
    with torch._inductor.config.patch(fallback_random=True):  # the same random mask as eager
        torch.manual_seed(0)
        compiled_loss, _, _ = compiled(images)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-4)
