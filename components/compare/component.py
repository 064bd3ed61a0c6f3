"""KFP component `compare`: the statistical comparison of both models' collected runs (steps.compare)."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def compare(
    params_yaml: str,
    finetune_runs: Input[list[Model]],
    baseline_runs: Input[list[Model]],
    splits: Input[Dataset],
    comparison: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    candidate_roc: Output[ClassificationMetrics],
    baseline_roc: Output[ClassificationMetrics],
):
    """renalmae.steps.compare of every collected run into `comparison`; the holdout ROC curve of each model's
    fold ensemble (binary task) as a KFP ROC artifact."""
    from renalmae.kfp_io import run_component

    inputs = {"run_dirs": [*finetune_runs, *baseline_runs], "splits_path": splits}
    curves = {"candidate": candidate_roc, "baseline": baseline_roc}
    run_component(
        "compare", params_yaml, inputs, comparison, metrics=metrics, report=report, roc_curves=curves
    )
