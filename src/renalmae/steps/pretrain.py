"""Step `pretrain`: masked-autoencoder pretraining of the ViT encoder (USF-MAE) on unlabelled ultrasound.

The pool is every `pool` image plus the development part of the labelled set (every labelled id outside
the holdout test and the external set); holdout test and external images are never seen.
lr = `pretrain.base_lr` × batch_size / 256 (MAE).
Writes encoder.safetensors + encoder.json, loss.csv, loss.png, reconstructions.png and metrics.json.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.artifacts import Encoder, IngestedData, Splits
from renalmae.data.cache import load_ingested
from renalmae.data.splits import load_splits
from renalmae.errors import DataError
from renalmae.io import write_json
from renalmae.models import create_model, load_init_checkpoint, model_spec, save_encoder
from renalmae.models.initialisation import checkpoint_initialisation, mae_pretraining_data
from renalmae.params import Params
from renalmae.registry.tracking import StepTracker, track_step
from renalmae.steps import Input, Output, Step
from renalmae.train import checkpoint as ckpt
from renalmae.train.classifier import file_digest
from renalmae.train.data import CachedImages
from renalmae.train.distributed import output_dir, setup
from renalmae.train.engine import FitConfig, fit, mae_objective, seed_everything
from renalmae.train.figures import plot_loss, plot_reconstructions

log = logging.getLogger(__name__)

STEP = Step(
    name="pretrain",
    inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits)),
    output=Output("out_dir", Encoder),
    params=("data", "encoder", "mae", "augment", "train", "pretrain"),
    processes="pretrain.gpus",
    nodes="pretrain.nodes",
)

RECONSTRUCTION_IMAGES = 8


def pretraining_ids(table: pd.DataFrame, development_ids: list[str], held_out_ids: list[str]) -> list[str]:
    """Pool ids + development ids; refuses a pool that is empty or holds a holdout test or external id."""
    ids = table.loc[table["origin"] == "pool", "id"].tolist() + list(development_ids)
    leaked = sorted(set(ids) & set(held_out_ids))
    if leaked:
        raise DataError(f"{len(leaked)} holdout test / external images (e.g. {leaked[:3]}) are in the "
                        "pretraining pool; the splits are inconsistent: rerun `renalmae split`")  # fmt: skip
    if not ids:
        raise DataError("the pretraining pool is empty: no `data.pool` images and no development images; "
                        "add an unlabelled pool to data.pool or labelled images to data.source")  # fmt: skip
    return ids


def run(params: Params, ingest_dir: str | Path, splits_path: str | Path, out_dir: str | Path) -> Path:
    started = time.time()
    out_dir = Path(out_dir)
    data = load_ingested(ingest_dir)
    data_version = IngestedData(ingest_dir).content_hash()
    splits = load_splits(splits_path)
    ids = pretraining_ids(data.table, splits.development_ids, splits.test_ids + splits.external_ids)
    images = CachedImages(data.images, data.rows(ids)["cache_index"].to_numpy())  # read on demand
    section = params.pretrain
    seed_everything(section.seed)  # the initial weights repeat from run to run
    model = create_model("mae", params)
    spec = model_spec("mae", params)
    init_report = None
    if section.init_checkpoint:
        init_report = load_init_checkpoint(
            model, section.init_checkpoint, normalisation=section.init_checkpoint_norm
        )
        log.info("%s", init_report)
    config = FitConfig(
        epochs=section.epochs, batch_size=section.batch_size, lr=section.base_lr * section.batch_size / 256,
        warmup_epochs=section.warmup_epochs, weight_decay=section.weight_decay, betas=section.betas,
        clip_grad=section.clip_grad, seed=section.seed,
    )  # fmt: skip
    fingerprint = ckpt.fingerprint(params, STEP.params, splits=file_digest(splits_path))
    context = setup(params.train.device, params.train.cpu_threads)
    objective = mae_objective(params.mae.mask_ratio, model.encoder.patch_embed.num_patches, context)
    tracking = (
        track_step(params, "pretrain", data_version)
        if context.is_main
        else contextlib.nullcontext(StepTracker())
    )
    with tracking as tracker, output_dir(out_dir, context) as staging:
        result = fit(
            model, images, None, objective, config, params.train, params.augment,
            on_metrics=tracker.log_metrics, checkpoint_dir=ckpt.checkpoint_dir(params, out_dir, "pretrain"),
            fingerprint=fingerprint, context=context,
        )  # fmt: skip
        metrics = {
            "images": len(ids),
            "pool_images": int((data.table["origin"] == "pool").sum()),
            "final_loss": result.history[-1]["train_loss"],
            "first_epoch_loss": result.history[0]["train_loss"],
            "steps": len(result.step_losses),
            "streamed": result.streamed,
            "init_checkpoint": init_report.to_dict() if init_report else None,
        }
        pool_images = int((data.table["origin"] == "pool").sum())
        info = {
            "params_hash": params.hash(), "images": len(ids), "final_loss": metrics["final_loss"],
            "data_version": data_version,
            "initialisation": checkpoint_initialisation(
                section.init_checkpoint, section.init_checkpoint_data, init_report
            ),
            "pretraining_data": mae_pretraining_data(
                pool_images, len(ids) - pool_images, params.data.pool, params.data.source
            ),
        }  # fmt: skip
        save_encoder(staging, model, spec, info)
        pd.DataFrame(result.step_losses, columns=["epoch", "step", "loss"]).to_csv(
            staging / Encoder.LOSS, index=False
        )
        plot_loss(result.step_losses, staging / Encoder.LOSS_FIGURE)
        sample = np.linspace(0, len(images) - 1, num=min(RECONSTRUCTION_IMAGES, len(images))).astype(int)
        plot_reconstructions(model, images.read(sample), staging / Encoder.RECONSTRUCTIONS, seed=section.seed)
        write_json(staging / Encoder.METRICS, metrics)  # no timings: the same run gives the same bytes
        tracker.log_metrics({"final_loss": metrics["final_loss"], "train_seconds": time.time() - started})
        tracker.log_artifacts(staging)
    log.info(
        "pretrain: %d images, loss %.4f → %.4f", len(ids), metrics["first_epoch_loss"], metrics["final_loss"]
    )
    return out_dir
