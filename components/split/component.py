"""KFP component `split`: grouped, stratified holdout test and k folds."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def split(params_yaml: str, ingested: Input[Dataset], validation: Input[Dataset], splits: Output[Dataset]):
    """renalmae.steps.split of `ingested` (refused unless `validation` passed) into `splits`."""
    from renalmae.kfp_io import run_component

    run_component("split", params_yaml, {"ingest_dir": ingested, "validation_dir": validation}, splits)
