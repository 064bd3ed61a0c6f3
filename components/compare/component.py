"""KFP component `compare`: metrics and statistical comparison of USF-MAE vs the baseline (steps.compare)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def compare(
    params_yaml: str,
    finetuned: Input[list[Model]],
    baselines: Input[list[Model]],
    comparison: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    pipeline_run_id: str = "",
):
    """Write metrics.json, figures and the HTML report into `comparison`; the page also goes to `report`."""
    from renalmae import kfp_io
    from renalmae.steps import compare as step

    params = kfp_io.component_params(params_yaml, pipeline_run_id)
    step.run(params, run_dirs=[m.path for m in [*finetuned, *baselines]], out_dir=comparison.path)
    kfp_io.copy_html(comparison.path, report)
    kfp_io.log_json_metrics(metrics, f"{comparison.path}/metrics.json")
