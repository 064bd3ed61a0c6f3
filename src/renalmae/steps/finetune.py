"""Step `finetune`: fine-tune the MAE-initialised ViT on each fold of each task (USF-MAE).

Layer-wise lr decay, drop path, label smoothing and class balancing as in the MAE fine-tuning recipe;
early stopping on validation AUC keeps the best epoch. Trains every task × fold × repeat of the params
in this process (`renalmae.pipeline.targets`), or the one given, each into its run folder under the
output: weights + run.json, predictions for the fold's validation images and the holdout test,
history.csv and metrics.json. Repeat r is seeded `finetune.seed + r`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from renalmae.artifacts import Encoder, IngestedData
from renalmae.initialisation import mae_initialisation
from renalmae.io import file_digest
from renalmae.models import create_model, load_encoder, load_encoder_into_vit, model_spec
from renalmae.params import Params
from renalmae.pipeline import Target, step, targets
from renalmae.registry.tracking import StepTracker, track_step
from renalmae.run_context import RunContext
from renalmae.train import checkpoint as ckpt
from renalmae.train.classifier import auc_sentence, load_fold, train_classifier, write_run
from renalmae.train.distributed import output_dir, setup
from renalmae.train.engine import seed_everything

log = logging.getLogger(__name__)

STEP = step("finetune")


_ENCODERS_REPORTED: set[str] = set()


def run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    encoder_dir: str | Path,
    out_dir: str | Path,
    task: str | None = None,
    fold: int | None = None,
    repeat: int | None = None,
    context: RunContext | None = None,
) -> Path:
    """Fine-tune every target of the params (or those with the given task, fold, repeat) under `out_dir`."""
    for target in targets(params, task, fold, repeat):
        train_run(params, ingest_dir, splits_path, encoder_dir, target, out_dir, context)
    return Path(out_dir)


def train_run(
    params: Params,
    ingest_dir: str | Path,
    splits_path: str | Path,
    encoder_dir: str | Path,
    target: Target,
    out_dir: str | Path,
    context: RunContext | None = None,
) -> Path:
    """One fold model of one task and repeat, written to its run folder under `out_dir`; returns that."""
    started = time.time()
    run_dir = target.path(out_dir)
    task, fold = target.task, target.fold
    fold_data = load_fold(params, ingest_dir, splits_path, task, fold)
    data_version = IngestedData(ingest_dir).content_hash()
    section = params.finetune.model_copy(update={"seed": params.finetune.seed + target.repeat})
    seed_everything(section.seed)  # the initial weights repeat from run to run
    model = create_model("vit", params, num_classes=len(fold_data.classes))
    spec = model_spec("vit", params, num_classes=len(fold_data.classes))
    encoder_state, encoder_info = load_encoder(encoder_dir)
    report = load_encoder_into_vit(model, encoder_state)
    # the same encoder loads the same way into every target: said once per process, not for each
    log.log(logging.DEBUG if str(encoder_dir) in _ENCODERS_REPORTED else logging.INFO, "%s", report)
    _ENCODERS_REPORTED.add(str(encoder_dir))
    fingerprint = ckpt.fingerprint(
        params, STEP.params, task=task, fold=fold, repeat=target.repeat,
        splits=file_digest(splits_path), encoder=file_digest(Path(encoder_dir) / Encoder.WEIGHTS),
    )  # fmt: skip
    dist = setup(params.train.device, params.train.cpu_threads)  # the processes of a torchrun job
    tracking = (
        track_step(params, "finetune", data_version, context, task=task, fold=fold)
        if dist.is_main
        else contextlib.nullcontext(StepTracker())
    )
    with tracking as tracker, output_dir(run_dir, dist) as staging:
        result = train_classifier(
            model, fold_data, params, section,
            lr=section.base_lr * section.batch_size / 256,
            layer_decay=section.layer_decay,
            on_metrics=tracker.log_metrics,
            checkpoint_dir=ckpt.checkpoint_dir(params, out_dir, f"finetune-{target.name}"),
            fingerprint=fingerprint,
            context=dist,
        )  # fmt: skip
        info = {"role": STEP.model.role, "repeat": target.repeat, "data_version": data_version,
                "encoder_source": str(encoder_dir), "encoder_load": report.to_dict(),
                "encoder_params_hash": encoder_info.get("params_hash"),
                "initialisation": mae_initialisation(encoder_dir, encoder_info),
                "class_balance": section.class_balance}  # fmt: skip
        model_name = STEP.model.name_for(params)
        metrics = write_run(staging, model, spec, info, fold_data, result, model_name, params, started)
        tracker.log_metrics({key: float(value) for key, value in metrics.items() if value is not None})
        tracker.log_artifacts(staging)
    log.info("finetune %s fold %d repeat %d: %s", task, fold, target.repeat, auc_sentence(metrics))
    return run_dir
