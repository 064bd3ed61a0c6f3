"""KFP component `stop`: fail the run when the data failed validation (its report is on the validate task)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def stop(reason: str, comparison: Output[Dataset]):
    """Raise `reason`, so the run fails visibly after the validate task has kept its report. (`comparison`
    is never written: it is declared so that the pipeline's output exists on both branches of the gate.)"""
    raise RuntimeError(reason)
