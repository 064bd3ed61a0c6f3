"""Score-CAM of a fold ensemble: the mean-probability model, with every member's channels.

What `renalmae predict` serves is not one network but the mean softmax probability of k fold models
(`renalmae.registry.pyfunc.FoldEnsemble`). Its explanation is Score-CAM of that function: the channels
are those of every member's layer (k · K maps on one grid), each masked input is scored by the ensemble's
mean probability, and the map sums over all channels. The probability an explanation page shows is then
the one the prediction table shows, and no member is singled out.
"""

from __future__ import annotations

import torch
from torch import nn

from renalmae.errors import ModelError
from renalmae.explain.layers import CamLayer, cnn_layer, is_vit, vit_layer


class MeanProbabilityEnsemble(nn.Module):
    """k classifiers as one: the output is log(mean softmax), so its softmax is the ensemble's probability."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ModelError("an ensemble needs at least one fold model")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([member(images).float().softmax(dim=-1) for member in self.members])
        return probabilities.mean(dim=0).log()


def ensemble_layer(
    ensemble: MeanProbabilityEnsemble, vit_path: str, cnn_path: str, unit_tokens: bool = False
) -> CamLayer:
    """The same layer in every member (ViT or CNN), its channels concatenated member after member."""
    members = list(ensemble.members)
    vit = is_vit(members[0])
    if any(is_vit(member) != vit for member in members):
        raise ModelError("an ensemble of ViTs and CNNs cannot share one Score-CAM layer; register one family")
    layers = [
        vit_layer(member, vit_path, unit_tokens=unit_tokens) if vit else cnn_layer(member, cnn_path)
        for member in members
    ]
    return CamLayer(
        modules=tuple(layer.modules[0] for layer in layers),
        path=layers[0].path,
        to_grid=layers[0].to_grid,
        align_corners=layers[0].align_corners,
    )
