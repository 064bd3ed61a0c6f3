"""Test kit for the models tests: tiny params (32 px images, a 2-block ViT, a 1-block decoder)."""

from __future__ import annotations

from renalmae.params import Params, params_from_dict

IMAGE_SIZE = 32
PATCH_SIZE = 8
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2


def tiny_params(**sections: dict) -> Params:
    raw = {
        "data": {"image_size": IMAGE_SIZE},
        "encoder": {"patch_size": PATCH_SIZE, "embed_dim": 32, "depth": 2, "num_heads": 2},
        "mae": {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2},
        "baseline": {"arch": "densenet121"},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return params_from_dict(raw)
