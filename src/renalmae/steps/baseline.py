"""Step `baseline`: train the CNN baseline (DenseNet-169) on one fold of one task, exactly like `finetune`.

Same splits, loop, augmentation, class balancing and early stopping on validation AUC; optional
initial weights from `baseline.init_checkpoint`. Same outputs as `finetune`; the model is named after
`baseline.arch` and plays the `baseline` role in the comparison.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from renalmae.artifacts import BASELINE, IngestedData, Splits, TrainedRun
from renalmae.initialisation import checkpoint_initialisation
from renalmae.models import create_model, load_init_checkpoint, model_spec
from renalmae.params import Params
from renalmae.registry.tracking import StepTracker, track_step
from renalmae.steps import Input, ModelIdentity, Output, Step
from renalmae.train import checkpoint as ckpt
from renalmae.train.classifier import file_digest, load_fold, train_classifier, write_run
from renalmae.train.distributed import output_dir, setup
from renalmae.train.engine import seed_everything

log = logging.getLogger(__name__)

STEP = Step(
    name="baseline",
    inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits)),
    output=Output("out_dir", TrainedRun),
    params=("data", "augment", "train", "baseline"),
    per_target=True,
    model=ModelIdentity(BASELINE, name_param="baseline.arch"),
)


def run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    task: str,
    fold: int,
    out_dir: str | Path,
) -> Path:
    started = time.time()
    out_dir = Path(out_dir)
    section = params.baseline
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
        "data_version": data_version,
        "init_checkpoint": section.init_checkpoint,
        "class_balance": section.class_balance,
        "initialisation": checkpoint_initialisation(
            section.init_checkpoint, section.init_checkpoint_data, report
        ),
    }
    fingerprint = ckpt.fingerprint(
        params,
        STEP.params,
        task=task,
        fold=fold,
        splits=file_digest(splits_path),
    )
    context = setup(params.train.device, params.train.cpu_threads)
    tracking = (
        track_step(params, "baseline", data_version, task=task, fold=fold)
        if context.is_main
        else contextlib.nullcontext(StepTracker())
    )
    with tracking as tracker, output_dir(out_dir, context) as staging:
        result = train_classifier(
            model, fold_data, params, section,
            lr=section.base_lr,
            channels_last=True,
            on_metrics=tracker.log_metrics,
            checkpoint_dir=ckpt.checkpoint_dir(params, out_dir, f"baseline-{task}-fold{fold}"),
            fingerprint=fingerprint,
            context=context,
        )  # fmt: skip
        model_name = STEP.model.name_for(params)
        metrics = write_run(staging, model, spec, info, fold_data, result, model_name, params, started)
        tracker.log_metrics({key: float(value) for key, value in metrics.items() if value is not None})
        tracker.log_artifacts(staging)
    log.info(
        "baseline %s fold %d: val AUC %s, test AUC %s (None: undefined)",
        task,
        fold,
        metrics["val_auc"],
        metrics["test_auc"],
    )
    return out_dir
