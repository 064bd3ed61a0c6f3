"""KFP component `validate`: check the ingested data against the data contract."""

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
):
    """renalmae.steps.validate of `ingested` into `validation`."""
    from renalmae.kfp_io import run_component

    run_component(
        "validate", params_yaml, {"ingest_dir": ingested}, validation, metrics=metrics, report=report
    )
