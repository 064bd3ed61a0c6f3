"""KFP component `pretrain`: masked-autoencoder pretraining of the ViT encoder (steps.pretrain), on a GPU."""

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
    pipeline_run_id: str = "",
):
    """Write the encoder weights, loss curve and reconstructions into the `encoder` model."""
    from renalmae import kfp_io
    from renalmae.steps import pretrain as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    step.run(params, ingest_dir=ingested.path, splits_path=splits.path, out_dir=encoder.path)
    kfp_io.log_json_metrics(metrics, f"{encoder.path}/metrics.json")
