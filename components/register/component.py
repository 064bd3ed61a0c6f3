"""KFP component `register`: log the models to MLflow and register `challenger` versions (steps.register)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register(
    params_yaml: str,
    finetuned: Input[list[Model]],
    baselines: Input[list[Model]],
    comparison: Input[Dataset],
    validation: Input[Dataset],
    registered: Output[Dataset],
    pipeline_run_id: str = "",
):
    """Write registered.json (model names, versions, aliases) as the `registered` dataset."""
    from renalmae import kfp_io
    from renalmae.steps import register as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    step.run(
        params, run_dirs=[m.path for m in [*finetuned, *baselines]], comparison_dir=comparison.path,
        validation_dir=validation.path, out_path=registered.path,
    )  # fmt: skip
