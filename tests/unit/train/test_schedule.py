import pytest
import timm
import torch
from torch import nn

from renalmae.train.schedule import build_optimizer, build_scheduler, param_groups, warmup_cosine


def test_lr_warms_up_linearly_to_the_peak_then_decays_by_cosine_to_zero():
    factors = [warmup_cosine(step, warmup_steps=4, total_steps=20) for step in range(21)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == pytest.approx(1.0)
    assert factors[12] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert factors[20] == pytest.approx(0.0)


def test_scheduler_sets_each_optimizer_step_lr():
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(
        param_groups(model, 0.05), lr=0.1, betas=(0.9, 0.95), device=torch.device("cpu")
    )
    scheduler = build_scheduler(optimizer, warmup_steps=2, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert seen[-1] < 0.01


def test_no_weight_decay_on_biases_norms_and_the_names_the_model_lists():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
            self.mask_token = nn.Parameter(torch.zeros(1, 1, 8))
            self.norm = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 8)

        def no_weight_decay(self):
            return {"pos_embed"}

    model = Tiny()
    decay_of = {id(p): g["weight_decay"] for g in param_groups(model, 0.05) for p in g["params"]}
    assert decay_of[id(model.fc.weight)] == decay_of[id(model.mask_token)] == 0.05  # as MAE pretraining
    assert (
        decay_of[id(model.fc.bias)] == decay_of[id(model.norm.weight)] == decay_of[id(model.pos_embed)] == 0.0
    )


def mae_layer_scale(name: str, depth: int, decay: float) -> float:
    """facebookresearch/mae `util/lr_decay.py`: `get_layer_id_for_vit` and `param_groups_lrd`'s scales."""
    num_layers = depth + 1
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        layer = 0
    elif name.startswith("blocks"):
        layer = int(name.split(".")[1]) + 1
    else:
        layer = num_layers
    return decay ** (num_layers - layer)


def test_layer_decay_gives_the_scales_and_decays_of_mae_fine_tuning():
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2,
        in_chans=1, num_classes=2, global_pool="avg", fc_norm=False,
    )  # fmt: skip
    groups = param_groups(vit, 0.05, layer_decay=0.65)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for name, parameter in vit.named_parameters():
        if name.startswith("norm."):  # see below
            continue
        assert scale_of[id(parameter)] == pytest.approx(mae_layer_scale(name, 3, 0.65)), name
        no_decay = parameter.ndim == 1 or name in ("pos_embed", "cls_token")  # MAE: model.no_weight_decay()
        assert decay_of[id(parameter)] == (0.0 if no_decay else 0.05), name
    assert scale_of[id(vit.patch_embed.proj.weight)] == pytest.approx(0.65**4)
    assert scale_of[id(vit.head.weight)] == 1.0
    # MAE's fine-tuning ViT has no per-token final norm (it pools, then a fresh `fc_norm` at scale 1); ours
    # keeps the pretrained `norm`, which timm's grouping puts with the last block
    assert scale_of[id(vit.norm.weight)] == scale_of[id(vit.blocks[2].mlp.fc2.weight)] == pytest.approx(0.65)
