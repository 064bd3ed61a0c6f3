"""KFP components that spread ingest over pods: `ingest_plan`, one `ingest_part` per pod, `ingest_merge`.

The DAG uses them instead of the one `ingest` task when compiled with `--ingest-parts N` (N > 1); their
output is the same `ingested` artifact (renalmae.steps.ingest: plan, decode_part, merge).
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_plan(params_yaml: str, parts: int, plan: Output[Dataset]) -> list:
    """List the inputs once (no pixel decoded) into the plan; the part numbers the pods fan out over."""
    from pathlib import Path

    from renalmae import kfp_io
    from renalmae.steps import ingest

    ingest.plan(kfp_io.component_params(params_yaml)).save(Path(plan.path))
    return list(range(parts))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_part(
    params_yaml: str,
    plan: Input[Dataset],
    part: int,
    parts: int,
    shards: Output[Dataset],
):
    """Decode this pod's share of the plan's shards (every `parts`-th one) into `shards`."""
    from renalmae import kfp_io
    from renalmae.steps import ingest

    ingest.decode_part(kfp_io.component_params(params_yaml), plan.path, part, parts, shards.path)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_merge(
    params_yaml: str,
    plan: Input[Dataset],
    shards: Input[list[Dataset]],
    ingested: Output[Dataset],
    metrics: Output[Metrics],
):
    """Assemble the `ingested` artifact from the plan and every part's shards."""
    from pathlib import Path

    from renalmae import kfp_io
    from renalmae.steps import ingest

    params = kfp_io.component_params(params_yaml)
    ingest.merge(params, plan.path, [part.path for part in shards], ingested.path)
    kfp_io.log_json_metrics(metrics, Path(ingested.path) / ingest.STEP.output.artifact.metrics_file)
