"""KFP component `validate`: the data validation suite; a failed rule fails the pipeline (steps.validate)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate(
    params_yaml: str,
    ingested: Input[Dataset],
    validation: Output[Dataset],
    data_docs: Output[HTML],
    metrics: Output[Metrics],
    pipeline_run_id: str = "",
):
    """Write the validation result (and Data Docs) into `validation`; raise when a rule fails."""
    from renalmae import kfp_io
    from renalmae.steps import validate as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    step.run(params, ingest_dir=ingested.path, report_dir=validation.path)
    kfp_io.copy_html(validation.path, data_docs)
    kfp_io.log_json_metrics(metrics, f"{validation.path}/summary.json")
