"""KFP component `pod_resources`: the GPUs, CPU and memory a step's pod asks for, read from the params."""

from typing import NamedTuple

from kfp import dsl

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def pod_resources(params_yaml: str, step: str) -> NamedTuple("PodResources", gpus=int, cpu=str, memory=str):
    """The step's processes per node (one GPU each) with a training pod's CPU and memory; no GPU and a
    light pod's CPU and memory when it submits a Kubeflow Trainer job instead (its nodes do the work)."""
    from typing import NamedTuple

    from renalmae import kfp_io

    gpus, cpu, memory = kfp_io.pod_resources(kfp_io.component_params(params_yaml), step)
    return NamedTuple("PodResources", gpus=int, cpu=str, memory=str)(gpus, cpu, memory)
