"""Where a model's starting weights came from: the `initialisation` record of run.json / encoder.json and
its one-line description, so every report can state each model's initialisation and pretraining data.
Torch-free: `compare` describes the records without loading the models package.

    {"method": "random" | "checkpoint" | "mae-pretraining",
     "checkpoint": path | null, "checkpoint_sha256": hex | null,
     "pretraining_data": text | null,          # what the checkpoint was pretrained on (params), or null
     "load": LoadReport.to_dict() | null,
     # mae-pretraining only (the fine-tuned ViT):
     "mae_pretraining": {"images": n, "pool_images": n, "development_images": n, "pool": [sources],
                         "labelled_source": source, "epochs": n, "include_development": bool,
                         "transductive": bool},
     "encoder_initialisation": the pretraining run's own record}
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # reports read these records without importing torch
    from renalmae.models.checkpoints import LoadReport


def checkpoint_initialisation(
    checkpoint: str | None, pretraining_data: str | None, report: LoadReport | None
) -> dict[str, Any]:
    """The record of a model started from `checkpoint` (a local file), or from random weights when None."""
    if not checkpoint:
        return {"method": "random", "checkpoint": None, "checkpoint_sha256": None, "pretraining_data": None,
                "load": None}  # fmt: skip
    return {
        "method": "checkpoint",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest(),
        "pretraining_data": pretraining_data,
        "load": report.to_dict() if report is not None else None,
    }


def mae_pretraining_data(
    pool_images: int,
    development_images: int,
    pool: list[str],
    labelled_source: str,
    *,
    include_development: bool = False,
    epochs: int | None = None,
) -> dict[str, Any]:
    """What an MAE pretraining run saw: the unlabelled pool, plus the labelled development images when
    `pretrain.include_development` (labels unused; then the run is transductive; never the holdout test
    or external images). `epochs` 0: nothing was pretrained (a published encoder used as it is)."""
    return {
        "images": pool_images + development_images,
        "pool_images": pool_images,
        "development_images": development_images,
        "pool": list(pool),
        "labelled_source": labelled_source,
        "epochs": epochs,
        "include_development": include_development,
        "transductive": development_images > 0,
    }


def mae_initialisation(encoder_dir: str | Path, encoder_info: dict[str, Any]) -> dict[str, Any]:
    """The record of a ViT fine-tuned from a pretraining run's encoder (`encoder.json` = `encoder_info`)."""
    return {
        "method": "mae-pretraining",
        "checkpoint": str(encoder_dir),
        "checkpoint_sha256": None,
        "pretraining_data": _describe_mae_data(encoder_info.get("pretraining_data") or {}),
        "load": None,
        "mae_pretraining": encoder_info.get("pretraining_data"),
        "encoder_initialisation": encoder_info.get("initialisation"),
    }


def describe_initialisation(record: dict[str, Any] | None) -> str:
    """What a model started from, as the object of "<model> started from ...", e.g. "MAE pretraining here on
    3,849 images (...) of a randomly initialised encoder". An MAE run of 0 epochs is described by the
    published encoder it handed on, never as pretraining."""
    if not record:
        return "not recorded"
    if record["method"] == "random":
        return "random weights (no pretraining)"
    if record["method"] == "checkpoint":
        return f"checkpoint {record['checkpoint']} (pretrained on {record['pretraining_data']})"
    encoder = record.get("encoder_initialisation") or {}
    if (record.get("mae_pretraining") or {}).get("epochs") == 0:
        return f"the encoder of {describe_initialisation(encoder)}, not pretrained further here"
    pretraining = f"MAE pretraining here on {record['pretraining_data']}"
    if encoder.get("method") == "random":
        return f"{pretraining} of a randomly initialised encoder"
    if encoder.get("method") == "checkpoint":
        return f"{pretraining}, continuing from {describe_initialisation(encoder)}"
    return pretraining


def _describe_mae_data(data: dict[str, Any]) -> str:
    pool = ", ".join(data.get("pool", [])) or "no pool"
    return (
        f"{data.get('images', 0):,} images ({data.get('pool_images', 0):,} unlabelled from {pool}; "
        f"{data.get('development_images', 0):,} development images of {data.get('labelled_source')}, "
        "labels unused)"
    )
