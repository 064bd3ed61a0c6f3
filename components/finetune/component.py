"""KFP component `finetune`: fine-tune the pretrained ViT on one task × fold × repeat (steps.finetune)."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def finetune(
    params_yaml: str,
    ingested: Input[Dataset],
    splits: Input[Dataset],
    encoder: Input[Model],
    task: str,
    fold: int,
    repeat: int,
    model: Output[Model],
    metrics: Output[Metrics],
    holdout_confusion: Output[ClassificationMetrics],
):
    """renalmae.steps.finetune of one run into `model` (its run folder below it)."""
    from renalmae.kfp_io import run_component

    inputs = {"ingest_dir": ingested, "splits_path": splits, "encoder_dir": encoder}
    target = {"task": task, "fold": fold, "repeat": repeat}
    run_component(
        "finetune", params_yaml, inputs, model, target, metrics, holdout_confusion=holdout_confusion
    )
