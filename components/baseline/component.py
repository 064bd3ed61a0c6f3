"""KFP component `baseline`: train the CNN baseline on one task × fold × repeat (steps.baseline)."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def baseline(
    params_yaml: str,
    ingested: Input[Dataset],
    splits: Input[Dataset],
    task: str,
    fold: int,
    repeat: int,
    model: Output[Model],
    metrics: Output[Metrics],
    holdout_confusion: Output[ClassificationMetrics],
):
    """renalmae.steps.baseline of one run into `model` (its run folder below it)."""
    from renalmae.kfp_io import run_component

    inputs = {"ingest_dir": ingested, "splits_path": splits}
    target = {"task": task, "fold": fold, "repeat": repeat}
    run_component(
        "baseline", params_yaml, inputs, model, target, metrics, holdout_confusion=holdout_confusion
    )
