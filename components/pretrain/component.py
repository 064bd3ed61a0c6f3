"""KFP component `pretrain`: MAE pretraining of the ViT encoder (steps.pretrain)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def pretrain(
    params_yaml: str,
    ingested: Input[Dataset],
    splits: Input[Dataset],
    encoder: Output[Model],
    metrics: Output[Metrics],
):
    """renalmae.steps.pretrain into `encoder` (torchrun for pretrain.gpus > 1, a TrainJob for nodes > 1)."""
    from renalmae.kfp_io import run_component

    run_component(
        "pretrain", params_yaml, {"ingest_dir": ingested, "splits_path": splits}, encoder, metrics=metrics
    )
