"""KFP component `split`: grouped stratified folds plus a grouped holdout test set (steps.split)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def split(
    params_yaml: str,
    ingested: Input[Dataset],
    validation: Input[Dataset],
    splits: Output[Dataset],
    pipeline_run_id: str = "",
):
    """Write splits.json (the `splits` dataset is that one file)."""
    from renalmae import kfp_io
    from renalmae.steps import split as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    step.run(params, ingest_dir=ingested.path, validation_dir=validation.path, out_path=splits.path)
