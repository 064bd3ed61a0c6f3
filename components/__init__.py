"""KFP components: one per pipeline step, each derived from the step's declaration (`STEP`).

`step_component(step, image)` writes the component function from `kfp_io.component_interface(step)`:
its signature (the artifacts, `task` / `fold`, the metrics / report / confusion outputs) and a body of
one call, `kfp_io.run_component(<step>, locals())`. KFP ships a lightweight component as the source of
its function, so the function is made from source text, which `print(component_source(step))` shows and
the compiled pipeline YAML holds.

The container images come from one place, so CI can build once and tag every component with the git
sha: `RENALMAE_IMAGE` (repository, default `ghcr.io/renalmae/renalmae`) and `RENALMAE_IMAGE_TAG`
(default `dev`). The CPU target runs the light steps, the CUDA target the ones that train or run models.
These are read when the components are defined, i.e. when the pipeline is compiled.
"""

import linecache
import os

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from renalmae.kfp_io import component_interface
from renalmae.steps import Step

IMAGE_REPOSITORY = os.environ.get("RENALMAE_IMAGE", "ghcr.io/renalmae/renalmae")
IMAGE_TAG = os.environ.get("RENALMAE_IMAGE_TAG", "dev")
CPU_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}-cpu"
CUDA_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}-cuda"


def component_source(step: Step) -> str:
    """The Python source of the component function of `step`."""
    arguments = []
    for port in component_interface(step):
        kind = {"input": "Input", "output": "Output"}.get(port.kind)
        arguments.append(f"    {port.name}: {f'{kind}[{port.type}]' if kind else port.type},")
    return "\n".join([
        f"def {step.name}(",
        *arguments,
        '    pipeline_run_id: str = "",',
        "):",
        f'    """renalmae.steps.{step.name}.run, on the paths of these artifacts (see its STEP)."""',
        "    from renalmae import kfp_io",
        "",
        f"    kfp_io.run_component({step.name!r}, locals())",
        "",
    ])  # fmt: skip


def step_component(step: Step, image: str) -> PythonComponent:
    """The KFP component of `step`, running in `image` (which holds the renalmae package)."""
    source = component_source(step)
    filename = f"<renalmae component {step.name}>"
    # KFP reads the function's source with `inspect.getsource`, which finds it in the line cache.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict = {}
    exec(compile(source, filename, "exec"), vars(dsl) | {"Input": dsl.Input, "Output": dsl.Output}, namespace)
    return dsl.component(namespace[step.name], base_image=image, install_kfp_package=False)
