"""KFP component `ingest`: list, check and decode every image into the `ingested` dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(params_yaml: str, ingested: Output[Dataset], metrics: Output[Metrics]):
    """renalmae.steps.ingest into `ingested`."""
    from renalmae.kfp_io import run_component

    run_component("ingest", params_yaml, {}, ingested, metrics=metrics)
