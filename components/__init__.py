"""KFP components: one module per step, each an ordinary typed function that calls the step.

Each `components/<step>/component.py` declares the component's inputs and outputs as KFP types and calls
`renalmae.kfp_io.run_component`, which runs `renalmae.steps.<step>` on the artifacts' paths;
`components/tests` holds every signature to the step's declaration (`renalmae.pipeline`).

The container images come from one place, so CI can build once and tag every component with the git
sha: `RENALMAE_IMAGE` (repository, default `ghcr.io/renalmae/renalmae`) and `RENALMAE_IMAGE_TAG`
(default `dev`). The CPU target runs the light steps, the CUDA target the ones that train or run models.
These are read when the components are defined, i.e. when the pipeline is compiled.
"""

import os

IMAGE_REPOSITORY = os.environ.get("RENALMAE_IMAGE", "ghcr.io/renalmae/renalmae")
IMAGE_TAG = os.environ.get("RENALMAE_IMAGE_TAG", "dev")
CPU_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}-cpu"
CUDA_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}-cuda"
