"""Training a classifier on one fold, shared by `finetune` (ViT) and `baseline` (CNN): fold data, the
objective (cross-entropy, or the MAE fine-tuning recipe's random erasing + mixup / CutMix on soft targets),
the `fit` call with validation AUC early stopping, and the run directory it writes (weights, predictions,
history, metrics)."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from renalmae.artifacts import TrainedRun
from renalmae.data.cache import load_ingested
from renalmae.data.predictions import (
    PREDICTIONS_FILE,
    probability_columns,
    task_classes,
    task_targets,
    write_predictions,
)
from renalmae.data.splits import load_splits
from renalmae.data.splitting import selection_split
from renalmae.errors import DataError, ParamsError
from renalmae.io import write_json
from renalmae.models.trained import save_trained_model
from renalmae.params import ClassifierTrainingParams, FinetuneParams, Params
from renalmae.stats.auc import roc_auc
from renalmae.train.augment import batch_erasing, batch_mixup
from renalmae.train.data import class_weights
from renalmae.train.distributed import DistContext
from renalmae.train.engine import (
    FitConfig,
    FitResult,
    MetricsHook,
    Objective,
    classification_objective,
    fit,
)
from renalmae.train.predict import predict_probabilities
from renalmae.train.selection import SELECTION_FLAGS, selection_flags, selection_record

log = logging.getLogger(__name__)

HISTORY_FILE = TrainedRun.HISTORY
METRICS_FILE = TrainedRun.METRICS


@dataclass(frozen=True)
class FoldData:
    """The images (uint8 [N, H, W]), integer targets and group ids of one fold's train / val, the holdout
    test and the external set (when the splits have one)."""

    task: str
    fold: int
    classes: list[str]
    ids: dict[str, list[str]]
    images: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    """Group (patient / series; the image's own id when it has none) of each image, per split."""


def load_fold(
    params: Params, ingest_dir: str | os.PathLike, splits_path: str | os.PathLike, task: str, fold: int
):
    """Train / val ids of `fold`, the holdout test and external ids, with their images and `task` targets.

    With `train.selection_fraction` > 0 a grouped, stratified share of the training ids becomes the
    `selection` split (epoch selection / early stopping) and is not trained on; a class below the floor
    (`train.selection_min_groups_per_class`, `train.selection_min_images_per_class`) gets more of its groups.
    """
    classes = task_classes(params.data.classes, params.data.negative_class, task)
    splits = load_splits(splits_path)
    train_ids, val_ids = splits.fold(fold)
    data = load_ingested(ingest_dir)
    ids = {"train": train_ids, "val": val_ids, **splits.evaluation_splits}
    if params.train.selection_fraction > 0 and train_ids:
        rows = data.rows(train_ids)
        is_selection = selection_split(
            task_targets(rows["label"], params.data.classes, params.data.negative_class, task),
            rows["group"].where(rows["group"].notna(), rows["id"]).astype(str).to_numpy(),
            params.train.selection_fraction,
            params.split.seed + fold,
            params.train.selection_min_groups_per_class,
            params.train.selection_min_images_per_class,
        )
        ids["train"] = [image_id for image_id, held in zip(train_ids, is_selection, strict=True) if not held]
        ids["selection"] = [image_id for image_id, held in zip(train_ids, is_selection, strict=True) if held]
    images, targets, groups = {}, {}, {}
    for split, split_ids in ids.items():
        rows = data.rows(split_ids)
        if rows["label"].isna().any():
            raise DataError(
                f"splits {splits_path} put unlabelled images into '{split}'; run `renalmae split` again"
            )
        images[split] = np.asarray(data.images[rows["cache_index"].to_numpy()])
        targets[split] = task_targets(rows["label"], params.data.classes, params.data.negative_class, task)
        groups[split] = rows["group"].where(rows["group"].notna(), rows["id"]).astype(str).to_numpy()
    if not ids["train"]:
        raise DataError(f"fold {fold} of {splits_path} has no training images; use fewer folds or more data")
    if "selection" in ids and len(np.unique(targets["selection"])) < 2:
        raise DataError(
            f"the selection split of fold {fold} ({len(ids['selection'])} training images held out to pick "
            "the epoch) holds a single class, so no epoch can be ranked; raise train.selection_fraction, add "
            "data, or set train.selection_fraction: 0 to select on the validation fold"
        )
    fold_data = FoldData(
        task=task, fold=fold, classes=classes, ids=ids, images=images, targets=targets, groups=groups
    )
    short = selection_size(fold_data, params)["below_floor"]
    if short:
        log.warning(
            "fold %d: the %s split that picks the epoch holds too few groups / images of %s for the floor "
            "(train.selection_min_groups_per_class %d, train.selection_min_images_per_class %d) even after "
            "taking up to half of each class's training groups; its fold models are flagged",
            fold, selection_split_name(fold_data), ", ".join(short),
            params.train.selection_min_groups_per_class, params.train.selection_min_images_per_class,
        )  # fmt: skip
    return fold_data


def soft_target_cross_entropy(
    logits: torch.Tensor, soft_targets: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of `-Σ_c y_c log softmax(logits)_c` (timm `SoftTargetCrossEntropy`).

    With `class_weights`, sample i weighs `Σ_c y_ic w_c` and the mean is over those weights, which for
    one-hot targets is `F.cross_entropy(weight=w)`'s weighted mean.
    """
    losses = -(soft_targets * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    if class_weights is None:
        return losses.mean()
    sample_weights = soft_targets @ class_weights
    return (losses * sample_weights).sum() / sample_weights.sum()


def classifier_objective(
    section: ClassifierTrainingParams, num_classes: int, weights: np.ndarray | None
) -> Objective:
    """Cross-entropy with label smoothing (and class weights), after the section's random erasing; with
    mixup / CutMix on, the soft-target cross-entropy of the mixed batch (MAE fine-tuning recipe)."""
    hard = classification_objective(weights, section.label_smoothing)
    erase = batch_erasing(section.random_erasing)
    mixup = batch_mixup(section, num_classes)
    cached: dict[torch.device, torch.Tensor] = {}

    def objective(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        if erase is not None:
            inputs = erase(inputs)
        if mixup is None:
            return hard(model, inputs, targets)
        inputs, soft_targets = mixup(inputs, targets)
        weight = None
        if weights is not None:
            if inputs.device not in cached:
                cached[inputs.device] = torch.as_tensor(weights, dtype=torch.float32, device=inputs.device)
            weight = cached[inputs.device]
        return soft_target_cross_entropy(model(inputs), soft_targets, weight)

    return objective


def _require_even_batches(section: ClassifierTrainingParams, name: str, train_images: int, world: int):
    batch = min(section.batch_size, train_images) // world
    if batch_mixup(section, 2) is not None and batch % 2:
        raise ParamsError(
            f"{name}.mixup / {name}.cutmix need an even batch per process (timm Mixup pairs each image with "
            f"another), got {batch} ({name}.batch_size {section.batch_size}, {train_images} training images, "
            f"{world} process(es)); make {name}.batch_size even"
        )


def train_classifier(
    model: nn.Module,
    fold_data: FoldData,
    params: Params,
    section: ClassifierTrainingParams,
    lr: float,
    *,
    layer_decay: float = 1.0,
    channels_last: bool = False,
    on_metrics: MetricsHook | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: str = "",
    context: DistContext | None = None,
) -> FitResult:
    """Fit `model` on the fold's training images, early-stopping on the AUC of the selection split (the
    validation fold when there is none; best epoch kept)."""
    num_classes = len(fold_data.classes)
    train_targets = fold_data.targets["train"]
    weights = class_weights(train_targets, num_classes) if section.class_balance == "loss" else None
    if section.class_balance == "sampler":
        class_weights(train_targets, num_classes)  # refuses a class without training images
    chooser = selection_split_name(fold_data)
    config = FitConfig(
        epochs=section.epochs,
        batch_size=section.batch_size,
        lr=lr,
        warmup_epochs=section.warmup_epochs,
        weight_decay=section.weight_decay,
        seed=section.seed,
        class_balance=section.class_balance,
        early_stopping_patience=section.early_stopping_patience,
        monitor=f"{chooser}_auc",
        layer_decay=layer_decay,
        channels_last=channels_last,
    )
    eval_batch = max(section.batch_size, 64)

    def validate(trained: nn.Module) -> dict[str, float]:
        probabilities = predict_probabilities(trained, fold_data.images[chooser], eval_batch)
        value = roc_auc(fold_data.targets[chooser], probabilities).value
        return {f"{chooser}_auc": math.nan if value is None else value}  # NaN: this epoch cannot be ranked

    name = "finetune" if isinstance(section, FinetuneParams) else "baseline"
    _require_even_batches(section, name, len(train_targets), context.world_size if context else 1)
    objective = classifier_objective(section, num_classes, weights)
    return fit(
        model,
        fold_data.images["train"],
        train_targets,
        objective,
        config,
        params.train,
        params.augment,
        validate=validate,
        on_metrics=on_metrics,
        checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint,
        context=context,
    )


def selection_split_name(fold_data: FoldData) -> str:
    """The split that picks the epoch: `selection` (inside the training folds) if there is one, else `val`."""
    return "selection" if "selection" in fold_data.ids else "val"


def selection_size(fold_data: FoldData, params: Params) -> dict:
    """run.json's `selection`: the size of the split that picks the epoch, per class, against the floor."""
    chooser = selection_split_name(fold_data)
    groups = fold_data.groups.get(chooser, np.asarray(fold_data.ids[chooser]))
    return selection_record(chooser, fold_data.classes, fold_data.targets[chooser], groups, params.train)


def epoch_selection(fold_data: FoldData, params: Params) -> dict:
    """run.json's record of which data picked the epoch (the report says it)."""
    chooser = selection_split_name(fold_data)
    return {
        "split": chooser,
        "images": len(fold_data.ids[chooser]),
        "fraction": params.train.selection_fraction,
        "description": "an inner grouped split of the training folds"
        if chooser == "selection"
        else "the validation fold (its metrics are then optimistic)",
    }


def predictions_table(
    model: nn.Module, fold_data: FoldData, model_name: str, batch_size: int = 64
) -> pd.DataFrame:
    """Rows for the fold's validation, holdout test and external images, in the predictions contract."""
    frames = []
    for split in [split for split in fold_data.ids if split not in ("train", "selection")]:
        probabilities = predict_probabilities(model, fold_data.images[split], batch_size)
        frame = pd.DataFrame(probabilities, columns=probability_columns(fold_data.classes))
        frame.insert(0, "id", fold_data.ids[split])
        frame.insert(1, "model", model_name)
        frame.insert(2, "task", fold_data.task)
        frame.insert(3, "fold", fold_data.fold)
        frame.insert(4, "split", split)
        frame.insert(5, "y_true", fold_data.targets[split])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_run(
    run_dir: Path,
    model: nn.Module,
    spec: dict,
    info: dict,
    fold_data: FoldData,
    result: FitResult,
    model_name: str,
    params: Params,
    started: float,
) -> dict[str, float]:
    """Write weights + run.json, predictions.parquet, history.csv and metrics.json; return the metrics
    (plus `train_seconds`, which stays out of the files so that the same run gives the same bytes)."""
    table = predictions_table(model, fold_data, model_name)
    write_predictions(run_dir / PREDICTIONS_FILE, table, fold_data.classes)
    pd.DataFrame(result.history).to_csv(run_dir / HISTORY_FILE, index=False)
    columns = probability_columns(fold_data.classes)
    metrics = {
        f"{split}_auc": roc_auc(rows["y_true"].to_numpy(), rows[columns].to_numpy()).value
        for split, rows in table.groupby("split", sort=False)
    }
    metrics |= {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
    }
    selection = selection_size(fold_data, params)
    flags = selection_flags(selection, result.best_epoch, result.best_value, len(result.history))
    for flag in flags:
        log.warning("%s %s fold %d: %s", model_name, fold_data.task, fold_data.fold, SELECTION_FLAGS[flag])
    record = {
        "model": model_name,
        "arch": spec["name"],
        "task": fold_data.task,
        "fold": fold_data.fold,
        "classes": fold_data.classes,
        "image_size": params.data.image_size,
        "crop": params.data.crop,
        "best_epoch": result.best_epoch,
        "best_epoch_auc": result.best_value,
        "epochs_run": len(result.history),
        "epoch_selection": epoch_selection(fold_data, params),
        "selection": selection,
        "selection_flags": flags,
        "params_hash": params.hash(),
        **info,
    }
    save_trained_model(run_dir, model, spec, record)
    write_json(run_dir / METRICS_FILE, metrics)
    return {**metrics, "train_seconds": round(time.time() - started, 1)}


def auc_sentence(metrics: dict) -> str:
    """`val AUC 0.812, test AUC 0.774` from a run's metrics (`undefined` where a split has one class)."""
    parts = []
    for key, value in metrics.items():
        if key.endswith("_auc"):
            parts.append(f"{key[:-4]} AUC {'undefined (one class)' if value is None else f'{value:.3f}'}")
    return ", ".join(parts)
