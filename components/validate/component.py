"""KFP component `validate`: check the ingested data against the data contract; its status gates the DAG."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate(
    params_yaml: str,
    ingested: Input[Dataset],
    validation: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
) -> str:
    """renalmae.steps.validate of `ingested` into `validation`; returns `passed` or `failed` (the report is
    kept either way: KFP uploads nothing of a failed task)."""
    from renalmae.kfp_io import run_validation

    return run_validation(params_yaml, ingested, validation, metrics, report)
