"""KFP component `compare`: the statistical comparison of both models' collected runs (steps.compare)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

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
):
    """renalmae.steps.compare of every collected run into `comparison`."""
    from renalmae.kfp_io import run_component

    inputs = {"run_dirs": [*finetune_runs, *baseline_runs], "splits_path": splits}
    run_component("compare", params_yaml, inputs, comparison, metrics=metrics, report=report)
