"""Step `finetune`: fine-tune the MAE-initialised ViT on one fold of one task (USF-MAE).

Layer-wise lr decay, drop path, label smoothing and class balancing as in the MAE fine-tuning recipe;
early stopping on validation AUC keeps the best epoch. Writes weights + run.json, predictions for the
fold's validation images and the holdout test, history.csv and metrics.json.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from renalmae.artifacts import CANDIDATE, Encoder, IngestedData, Splits, TrainedRun
from renalmae.initialisation import mae_initialisation
from renalmae.models import create_model, load_encoder, load_encoder_into_vit, model_spec
from renalmae.params import Params
from renalmae.registry.tracking import StepTracker, track_step
from renalmae.steps import Input, ModelIdentity, Output, Step
from renalmae.train import checkpoint as ckpt
from renalmae.train.classifier import file_digest, load_fold, train_classifier, write_run
from renalmae.train.distributed import output_dir, setup
from renalmae.train.engine import seed_everything

log = logging.getLogger(__name__)

STEP = Step(
    name="finetune",
    inputs=(Input("ingest_dir", IngestedData), Input("splits_path", Splits), Input("encoder_dir", Encoder)),
    output=Output("out_dir", TrainedRun),
    params=("data", "encoder", "augment", "train", "finetune"),
    per_target=True,
    model=ModelIdentity(CANDIDATE, name="usfmae"),
)


def run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    encoder_dir: str | Path,
    task: str,
    fold: int,
    out_dir: str | Path,
) -> Path:
    started = time.time()
    out_dir = Path(out_dir)
    fold_data = load_fold(params, ingest_dir, splits_path, task, fold)
    data_version = IngestedData(ingest_dir).content_hash()
    seed_everything(params.finetune.seed)  # the initial weights repeat from run to run
    model = create_model("vit", params, num_classes=len(fold_data.classes))
    spec = model_spec("vit", params, num_classes=len(fold_data.classes))
    encoder_state, encoder_info = load_encoder(encoder_dir)
    report = load_encoder_into_vit(model, encoder_state)
    log.info("%s", report)
    section = params.finetune
    fingerprint = ckpt.fingerprint(
        params, STEP.params, task=task, fold=fold,
        splits=file_digest(splits_path), encoder=file_digest(Path(encoder_dir) / Encoder.WEIGHTS),
    )  # fmt: skip
    context = setup(params.train.device, params.train.cpu_threads)
    tracking = (
        track_step(params, "finetune", data_version, task=task, fold=fold)
        if context.is_main
        else contextlib.nullcontext(StepTracker())
    )
    with tracking as tracker, output_dir(out_dir, context) as staging:
        result = train_classifier(
            model, fold_data, params, section,
            lr=section.base_lr * section.batch_size / 256,
            layer_decay=section.layer_decay,
            on_metrics=tracker.log_metrics,
            checkpoint_dir=ckpt.checkpoint_dir(params, out_dir, f"finetune-{task}-fold{fold}"),
            fingerprint=fingerprint,
            context=context,
        )  # fmt: skip
        info = {"role": STEP.model.role, "data_version": data_version,
                "encoder_source": str(encoder_dir), "encoder_load": report.to_dict(),
                "encoder_params_hash": encoder_info.get("params_hash"),
                "initialisation": mae_initialisation(encoder_dir, encoder_info),
                "class_balance": section.class_balance}  # fmt: skip
        model_name = STEP.model.name_for(params)
        metrics = write_run(staging, model, spec, info, fold_data, result, model_name, params, started)
        tracker.log_metrics({key: float(value) for key, value in metrics.items() if value is not None})
        tracker.log_artifacts(staging)
    log.info(
        "finetune %s fold %d: val AUC %s, test AUC %s (None: undefined)",
        task,
        fold,
        metrics["val_auc"],
        metrics["test_auc"],
    )
    return out_dir
