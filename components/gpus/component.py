"""KFP component `pod_gpus`: how many GPUs a step's pod asks for, read from the params."""

from kfp import dsl

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def pod_gpus(params_yaml: str, step: str) -> int:
    """The step's processes per node when its pod trains (one GPU each); 0 when it submits a Kubeflow
    Trainer job instead (its nodes hold the GPUs)."""
    from renalmae import kfp_io

    return kfp_io.pod_gpus(kfp_io.component_params(params_yaml), step)
