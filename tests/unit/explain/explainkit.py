"""Helpers of the explain tests: tiny params for a 32-pixel phantom, a tiny ViT and a small CNN."""

from __future__ import annotations

from renalmae.params import Params, params_from_dict


def tiny_params(**sections) -> Params:
    raw = {
        "data": {"source": "phantom://renal?n=48&seed=0", "pool": [], "image_size": 32, "decode_workers": 0},
        "phantom": {"difficulty": 0.2, "class_fractions": [0.34, 0.33, 0.33]},
        "encoder": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
        "baseline": {"arch": "resnet10t"},
        "explain": {"images_per_class": 2, "batch_size": 128, "cnn_layer": "layer4"},
        "train": {"device": "cpu", "progress": False},
        "tracking": {"enabled": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return params_from_dict(raw)
