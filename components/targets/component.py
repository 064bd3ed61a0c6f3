"""KFP component `targets`: the training runs the pipeline fans out over, read from the params."""

from kfp import dsl

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def targets(params_yaml: str) -> list:
    """`[{"task_type": "binary", "fold": 0, "repeat": 0}, ...]`: finetune.tasks × split.folds × repeats."""
    from renalmae import kfp_io

    return kfp_io.training_targets(kfp_io.component_params(params_yaml))
