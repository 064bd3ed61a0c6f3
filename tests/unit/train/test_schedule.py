import pytest
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


def test_no_weight_decay_on_biases_norms_and_position_embeddings():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
            self.norm = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 8)

    model = Tiny()
    decay_of = {id(p): g["weight_decay"] for g in param_groups(model, 0.05) for p in g["params"]}
    assert decay_of[id(model.fc.weight)] == 0.05
    assert (
        decay_of[id(model.fc.bias)] == decay_of[id(model.norm.weight)] == decay_of[id(model.pos_embed)] == 0.0
    )


def test_layer_decay_gives_deeper_blocks_larger_learning_rates():
    class TinyViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Linear(4, 8)
            self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
            self.head = nn.Linear(8, 2)

    model = TinyViT()
    scale_of = {id(p): g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.5) for p in g["params"]}
    scales = [scale_of[id(model.patch_embed.weight)]] + [scale_of[id(b.weight)] for b in model.blocks]
    assert scales == pytest.approx([0.5**4, 0.5**3, 0.5**2, 0.5])
    assert scale_of[id(model.head.weight)] == 1.0
