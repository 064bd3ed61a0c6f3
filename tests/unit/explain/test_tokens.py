"""High-norm tokens (Darcet et al. 2024) are found where planted, and unit-norm tokens remove them."""

from __future__ import annotations

import numpy as np
import torch
from test_layers import images, tiny_vit

from renalmae.explain.layers import vit_layer
from renalmae.explain.tokens import candidate_layers, choose_layer, edge_cells, layer_agreement, token_norms

CORNER = 1 + 0  # the class token comes first, then patch (0, 0)


def planted(model: torch.nn.Module, factor: float = 20.0) -> torch.nn.Module:
    """`model` with the corner patch token of block 0's residual output scaled by `factor`."""

    def inflate(_module, _inputs, output):
        output = output.clone()
        output[:, CORNER] *= factor
        return output

    model.blocks[0].register_forward_hook(inflate)
    return model


def test_a_planted_high_norm_corner_token_is_an_edge_outlier_of_the_residual_stream_only():
    model = planted(tiny_vit(depth=2))
    norms = {entry.layer: entry for entry in token_norms(model, images(4))}
    residual = norms["blocks.0"]
    assert residual.outlier_share == 1 / 16  # one token of 16 in every image
    assert residual.outlier_edge_share == 1.0  # and it is on the edge
    assert residual.mean_norm[0, 0] > 5 * np.median(residual.mean_norm)
    assert residual.edge_over_interior > 1.5
    assert norms["blocks.1.norm1"].outlier_share == 0.0  # a LayerNorm output has near-equal token norms
    assert residual.edge_cell_share == edge_cells((4, 4)).mean() == 12 / 16


def test_an_untouched_vit_has_no_outlier_tokens():
    norms = token_norms(tiny_vit(depth=2), images(4))
    assert all(entry.outlier_share == 0.0 for entry in norms)
    assert all(np.isnan(entry.outlier_edge_share) for entry in norms)


def test_unit_tokens_give_every_patch_token_the_same_norm():
    model = planted(tiny_vit(depth=2))
    layer = vit_layer(model, "blocks.0", unit_tokens=True)
    captured = []
    handle = layer.modules[0].register_forward_hook(lambda _m, _i, output: captured.append(output))
    with torch.no_grad():
        model(images(2))
    handle.remove()
    grid = layer.activations(captured, (32, 32))
    np.testing.assert_allclose(grid.norm(dim=1).numpy(), 1.0, atol=1e-5)
    assert layer.path == "blocks.0 (unit tokens)"


def test_layer_agreement_scores_every_candidate_layer_against_one_occlusion_map():
    model = tiny_vit(depth=2)
    candidates = candidate_layers(model)
    assert candidates[:3] == [("blocks.0.norm1", False), ("blocks.0", False), ("blocks.0", True)]
    agreement = layer_agreement(model, images(3), torch.tensor([0, 1, 0]), candidates, batch_size=40)
    assert list(agreement) == ["blocks.0.norm1", "blocks.0", "blocks.0 (unit tokens)", "blocks.1.norm1",
                               "blocks.1", "blocks.1 (unit tokens)"]  # fmt: skip
    for values in agreement.values():
        assert values.shape == (3,) and np.all((values >= -1) & (values <= 1))


def test_the_layer_chosen_is_the_candidate_that_agrees_best_with_occlusion():
    model = tiny_vit(depth=2)
    inputs, targets = images(4), torch.tensor([0, 1, 0, 1])
    choice = choose_layer(model, inputs, targets, ["a", "a", "b", "b"], batch_size=40, resamples=50)
    agreement = layer_agreement(model, inputs, targets, candidate_layers(model), batch_size=40)
    best = max(agreement, key=lambda name: np.nanmean(agreement[name]))
    assert choice.chosen == best
    assert set(choice.agreement) == set(agreement) and choice.agreement[best]["groups"] == 2
