"""KFP component `ingest`: decode the labelled source and the pools once (renalmae.steps.ingest)."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(params_yaml: str, ingested: Output[Dataset], metrics: Output[Metrics], pipeline_run_id: str = ""):
    """Write table.parquet and the uint8 image / mask caches into the `ingested` dataset."""
    from renalmae import kfp_io
    from renalmae.steps import ingest as step

    step.run(kfp_io.component_params(params_yaml, pipeline_run_id), out_dir=ingested.path)
    kfp_io.log_json_metrics(metrics, f"{ingested.path}/ingest.json")
