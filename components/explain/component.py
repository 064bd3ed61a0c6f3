"""KFP component `explain`: Score-CAM maps of holdout images and their localisation (steps.explain)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def explain(
    params_yaml: str,
    ingested: Input[Dataset],
    splits: Input[Dataset],
    finetuned: Input[list[Model]],
    baselines: Input[list[Model]],
    explanations: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    pipeline_run_id: str = "",
):
    """Write overlays, the grid figure, localisation.json and an HTML page into `explanations`."""
    from renalmae import kfp_io
    from renalmae.steps import explain as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    run_dirs = [m.path for m in [*finetuned, *baselines]]
    step.run(
        params,
        ingest_dir=ingested.path,
        splits_path=splits.path,
        run_dirs=run_dirs,
        out_dir=explanations.path,
    )
    kfp_io.copy_html(explanations.path, report)
    kfp_io.log_json_metrics(metrics, f"{explanations.path}/localisation.json")
