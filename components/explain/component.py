"""KFP component `explain`: Score-CAM of both models, checked by lesion and occlusion tests."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def explain(
    params_yaml: str,
    ingested: Input[Dataset],
    splits: Input[Dataset],
    finetune_runs: Input[list[Model]],
    baseline_runs: Input[list[Model]],
    explanations: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """renalmae.steps.explain of every collected run into `explanations`."""
    from renalmae.kfp_io import run_component

    inputs = {"ingest_dir": ingested, "splits_path": splits, "run_dirs": [*finetune_runs, *baseline_runs]}
    run_component("explain", params_yaml, inputs, explanations, metrics=metrics, report=report)
