"""KFP component `baseline`: train the DenseNet-169 baseline on one fold of one task (steps.baseline)."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def baseline(
    params_yaml: str,
    ingested: Input[Dataset],
    splits: Input[Dataset],
    task_name: str,
    fold: int,
    model: Output[Model],
    metrics: Output[Metrics],
    holdout_confusion: Output[ClassificationMetrics],
    pipeline_run_id: str = "",
):
    """Write weights, run.json and predictions.parquet (validation fold + holdout) into `model`."""
    from renalmae import kfp_io
    from renalmae.steps import baseline as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    step.run(
        params,
        ingest_dir=ingested.path,
        splits_path=splits.path,
        task=task_name,
        fold=fold,
        out_dir=model.path,
    )
    kfp_io.log_json_metrics(metrics, f"{model.path}/metrics.json")
    kfp_io.log_confusion_matrix(holdout_confusion, model.path)
