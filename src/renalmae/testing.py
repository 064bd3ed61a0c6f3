"""Tiny parameters for tests and `--tiny` benchmarks: every step runs in seconds on one CPU core.

`tiny_params(*layers, **sections)` starts from `TINY` (a 60-image phantom at 32 px, a one-block ViT, one
epoch of everything, two folds, the binary task, no MLflow) and lays each mapping of sections over it,
key by key within a section: `tiny_params(KIT_SECTIONS, finetune={"epochs": 3})`. Nothing in the
pipeline imports this module.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from renalmae.params import Params, params_from_dict

TINY: dict[str, dict[str, Any]] = {
    "data": {
        "source": "phantom://renal?n=60&seed=0",
        "pool": ["phantom://renal?n=20&seed=1&unlabelled=true"],
        "image_size": 32,
        "decode_workers": 0,
    },
    "phantom": {"difficulty": 0.2, "class_fractions": [0.5, 0.3, 0.2]},
    "validate": {"min_images_per_class": 3},
    "split": {"folds": [0, 1], "test_fraction": 0.25},
    "encoder": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2},
    "mae": {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2},
    # no selection floor: a 60-image phantom cannot meet it (tests of the floor set their own)
    "train": {
        "device": "cpu",
        "progress": False,
        "cpu_threads": 1,
        "selection_min_groups_per_class": 0,
        "selection_min_images_per_class": 0,
    },
    "pretrain": {"epochs": 1, "batch_size": 16},
    "finetune": {"tasks": ["binary"], "epochs": 1, "batch_size": 16},
    "baseline": {"epochs": 1, "batch_size": 16},
    "evaluate": {"bootstrap_resamples": 100},
    "explain": {
        "images_per_class": 1,
        "batch_size": 16,
        "cnn_channels": 8,
        "faithfulness_steps": 2,
        "max_images": 4,
    },
    "tracking": {"enabled": False},
}


def tiny_sections(*layers: dict[str, dict[str, Any]], **sections: dict[str, Any]) -> dict[str, Any]:
    """`TINY` with each layer (then `sections`) laid over it, section by section; a plain mapping."""
    raw = copy.deepcopy(TINY)
    for layer in (*layers, sections):
        for name, values in layer.items():
            if isinstance(values, dict):
                raw.setdefault(name, {}).update(copy.deepcopy(values))
            else:
                raw[name] = copy.deepcopy(values)
    return raw


def tiny_params(*layers: dict[str, dict[str, Any]], **sections: dict[str, Any]) -> Params:
    """Validated tiny `Params` (see the module docstring); raises `ParamsError` for an unknown key."""
    return params_from_dict(tiny_sections(*layers, **sections), source="tiny_params")


def tiny_params_yaml(*layers: dict[str, dict[str, Any]], **sections: dict[str, Any]) -> str:
    """The text of a tiny params file (what a KFP component or `--params` receives)."""
    tiny_params(*layers, **sections)  # refuse a bad key here, not in a subprocess
    return yaml.safe_dump(tiny_sections(*layers, **sections), sort_keys=False)
