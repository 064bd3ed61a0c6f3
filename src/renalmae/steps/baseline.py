"""Step `baseline`: train the CNN baseline (DenseNet-169) on each fold of each task, exactly like `finetune`.

Same splits, loop, augmentation, class balancing and early stopping on validation AUC; optional
initial weights from `baseline.init_checkpoint`. Same targets and outputs as `finetune`; the model is
named after `baseline.arch` and plays the `baseline` role in the comparison. Repeat r is seeded
`baseline.seed + r`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from renalmae.artifacts import IngestedData
from renalmae.initialisation import checkpoint_initialisation
from renalmae.io import file_digest
from renalmae.models import create_model, load_init_checkpoint, model_spec
from renalmae.params import Params
from renalmae.pipeline import Target, step, targets
from renalmae.registry.tracking import StepTracker, track_step
from renalmae.run_context import RunContext
from renalmae.train import checkpoint as ckpt
from renalmae.train.classifier import auc_sentence, load_fold, train_classifier, write_run
from renalmae.train.distributed import output_dir, setup
from renalmae.train.engine import seed_everything

log = logging.getLogger(__name__)

STEP = step("baseline")


def run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    out_dir: str | Path,
    task: str | None = None,
    fold: int | None = None,
    repeat: int | None = None,
    context: RunContext | None = None,
) -> Path:
    """Train every target of the params (or those with the given task, fold, repeat) under `out_dir`."""
    for target in targets(params, task, fold, repeat):
        train_run(params, ingest_dir, splits_path, target, out_dir, context)
    return Path(out_dir)


def train_run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    target: Target,
    out_dir: str | Path,
    context: RunContext | None = None,
) -> Path:
    """One fold model of one task and repeat, written to its run folder under `out_dir`; returns that."""
    started = time.time()
    run_dir = target.path(out_dir)
    task, fold = target.task, target.fold
    section = params.baseline.model_copy(update={"seed": params.baseline.seed + target.repeat})
    fold_data = load_fold(params, ingest_dir, splits_path, task, fold)
    data_version = IngestedData(ingest_dir).content_hash()
    seed_everything(section.seed)  # the initial weights repeat from run to run
    model = create_model("cnn", params, num_classes=len(fold_data.classes))
    spec = model_spec("cnn", params, num_classes=len(fold_data.classes))
    report = None
    if section.init_checkpoint:
        report = load_init_checkpoint(
            model, section.init_checkpoint, "baseline.init_checkpoint", section.init_checkpoint_norm
        )
        log.info("%s", report)
    info = {
        "role": STEP.model.role,
        "repeat": target.repeat,
        "data_version": data_version,
        "init_checkpoint": section.init_checkpoint,
        "class_balance": section.class_balance,
        "initialisation": checkpoint_initialisation(
            section.init_checkpoint, section.init_checkpoint_data, report
        ),
    }
    fingerprint = ckpt.fingerprint(
        params, STEP.params, task=task, fold=fold, repeat=target.repeat, splits=file_digest(splits_path)
    )
    dist = setup(params.train.device, params.train.cpu_threads)  # the processes of a torchrun job
    tracking = (
        track_step(params, "baseline", data_version, context, task=task, fold=fold)
        if dist.is_main
        else contextlib.nullcontext(StepTracker())
    )
    with tracking as tracker, output_dir(run_dir, dist) as staging:
        result = train_classifier(
            model, fold_data, params, section,
            lr=section.base_lr,
            channels_last=True,
            on_metrics=tracker.log_metrics,
            checkpoint_dir=ckpt.checkpoint_dir(params, out_dir, f"baseline-{target.name}"),
            fingerprint=fingerprint,
            context=dist,
        )  # fmt: skip
        model_name = STEP.model.name_for(params)
        metrics = write_run(staging, model, spec, info, fold_data, result, model_name, params, started)
        tracker.log_metrics({key: float(value) for key, value in metrics.items() if value is not None})
        tracker.log_artifacts(staging)
    log.info("baseline %s fold %d repeat %d: %s", task, fold, target.repeat, auc_sentence(metrics))
    return run_dir
