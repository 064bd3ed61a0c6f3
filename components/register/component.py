"""KFP component `register`: register each task's fold ensembles in MLflow (steps.register)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    params_yaml: str,
    finetune_runs: Input[list[Model]],
    baseline_runs: Input[list[Model]],
    comparison: Input[Dataset],
    validation: Input[Dataset],
    registered: Output[Dataset],
):
    """renalmae.steps.register of every collected run into `registered`."""
    from renalmae.kfp_io import run_component

    inputs = {
        "run_dirs": [*finetune_runs, *baseline_runs],
        "comparison_dir": comparison,
        "validation_dir": validation,
    }
    run_component("register", params_yaml, inputs, registered)
