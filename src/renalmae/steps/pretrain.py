"""Step `pretrain`: masked-autoencoder pretraining of the ViT encoder (USF-MAE) on unlabelled ultrasound.

The pool is every `pool` image; with `pretrain.include_development` the development part of the
labelled set (every labelled id outside the holdout test and the external set) joins it, and the
encoder records the run as transductive. Holdout test and external images are never seen.
`pretrain.epochs: 0` with `pretrain.init_checkpoint` trains nothing: the published encoder is written
as it is (the paper fine-tuned a pretrained USF-MAE). lr = `pretrain.base_lr` × batch_size / 256 (MAE).
Writes encoder.safetensors + encoder.json, loss.csv, loss.png, reconstructions.png and metrics.json.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.artifacts import Encoder, IngestedData
from renalmae.data.cache import load_ingested
from renalmae.data.splits import load_splits
from renalmae.errors import DataError
from renalmae.initialisation import checkpoint_initialisation, mae_pretraining_data
from renalmae.io import file_digest, write_json
from renalmae.models import create_model, load_init_checkpoint, model_spec, save_encoder
from renalmae.params import Params
from renalmae.pipeline import step
from renalmae.registry.tracking import StepTracker, track_step
from renalmae.run_context import RunContext
from renalmae.train import checkpoint as ckpt
from renalmae.train.data import CachedImages
from renalmae.train.distributed import output_dir, setup
from renalmae.train.engine import FitConfig, fit, mae_objective, seed_everything
from renalmae.train.figures import plot_loss, plot_reconstructions

log = logging.getLogger(__name__)

STEP = step("pretrain")

RECONSTRUCTION_IMAGES = 8


def pretraining_ids(
    table: pd.DataFrame, development_ids: list[str], held_out_ids: list[str], include_development: bool = True
) -> list[str]:
    """Pool ids (+ development ids when included); refuses a pool that is empty or holds a holdout test or
    external id."""
    ids = table.loc[table["origin"] == "pool", "id"].tolist() + (
        list(development_ids) if include_development else []
    )
    leaked = sorted(set(ids) & set(held_out_ids))
    if leaked:
        raise DataError(f"{len(leaked)} holdout test / external images (e.g. {leaked[:3]}) are in the "
                        "pretraining pool; the splits are inconsistent: rerun `renalmae split`")  # fmt: skip
    if not ids:
        raise DataError("the pretraining pool is empty: no `data.pool` images (and no development images "
                        "joined it: pretrain.include_development); add an unlabelled pool to data.pool, "
                        "or set pretrain.include_development: true")  # fmt: skip
    return ids


def _reconstruction_images(data, development_ids: list[str]) -> np.ndarray:
    """Images to show reconstructions of when nothing was pretrained: the pool, else development images."""
    ids = data.table.loc[data.table["origin"] == "pool", "id"].tolist() or list(development_ids)
    return np.asarray(data.images[data.rows(ids[:RECONSTRUCTION_IMAGES])["cache_index"].to_numpy()])


def run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    out_dir: str | Path,
    context: RunContext | None = None,
) -> Path:
    started = time.time()
    out_dir = Path(out_dir)
    data = load_ingested(ingest_dir)
    data_version = IngestedData(ingest_dir).content_hash()
    splits = load_splits(splits_path)
    section = params.pretrain
    held_out = splits.test_ids + splits.external_ids
    ids = (
        pretraining_ids(data.table, splits.development_ids, held_out, section.include_development)
        if section.epochs > 0
        else []
    )
    images = CachedImages(data.images, data.rows(ids)["cache_index"].to_numpy())  # read on demand
    pool_images = int((data.table["origin"] == "pool").sum()) if section.epochs > 0 else 0
    pretraining = mae_pretraining_data(
        pool_images, len(ids) - pool_images, params.data.pool, params.data.source,
        include_development=section.include_development, epochs=section.epochs,
    )  # fmt: skip
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
    dist = setup(params.train.device, params.train.cpu_threads)  # the processes of a torchrun job
    objective = mae_objective(params.mae.mask_ratio, model.encoder.patch_embed.num_patches, dist)
    tracking = (
        track_step(params, "pretrain", data_version, context)
        if dist.is_main
        else contextlib.nullcontext(StepTracker())
    )
    with tracking as tracker, output_dir(out_dir, dist) as staging:
        step_losses, history, streamed = [], [], False  # epochs 0: the published encoder as it is
        if section.epochs > 0:
            result = fit(
                model, images, None, objective, config, params.train, params.augment,
                on_metrics=tracker.log_metrics, fingerprint=fingerprint, context=dist,
                checkpoint_dir=ckpt.checkpoint_dir(params, out_dir, "pretrain"),
            )  # fmt: skip
            step_losses, history, streamed = result.step_losses, result.history, result.streamed
        metrics = {
            "images": len(ids),
            "pool_images": pool_images,
            "final_loss": history[-1]["train_loss"] if history else None,
            "first_epoch_loss": history[0]["train_loss"] if history else None,
            "steps": len(step_losses),
            "streamed": streamed,
            "init_checkpoint": init_report.to_dict() if init_report else None,
            "pretraining_data": pretraining,
        }
        info = {
            "params_hash": params.hash(), "images": len(ids), "final_loss": metrics["final_loss"],
            "data_version": data_version,
            "initialisation": checkpoint_initialisation(
                section.init_checkpoint, section.init_checkpoint_data, init_report
            ),
            "pretraining_data": pretraining,
        }  # fmt: skip
        save_encoder(staging, model, spec, info)
        losses = pd.DataFrame(step_losses, columns=["epoch", "step", "loss"])
        losses.to_csv(staging / Encoder.LOSS, index=False)
        plot_loss(step_losses, staging / Encoder.LOSS_FIGURE, "MAE pretraining loss" if step_losses else
                  "no pretraining (pretrain.epochs: 0): the published encoder as it is")  # fmt: skip
        if len(images):
            sample = np.linspace(0, len(images) - 1, num=min(RECONSTRUCTION_IMAGES, len(images))).astype(int)
            shown = images.read(sample)
        else:
            shown = _reconstruction_images(data, splits.development_ids)
        plot_reconstructions(model, shown, staging / Encoder.RECONSTRUCTIONS, seed=section.seed)
        write_json(staging / Encoder.METRICS, metrics)  # no timings: the same run gives the same bytes
        if metrics["final_loss"] is not None:
            tracker.log_metrics({"final_loss": metrics["final_loss"], "train_seconds": time.time() - started})
        tracker.log_artifacts(staging)
    log.info("pretrain: %d images, loss %s → %s, transductive: %s", len(ids), metrics["first_epoch_loss"],
             metrics["final_loss"], pretraining["transductive"])  # fmt: skip
    return out_dir
