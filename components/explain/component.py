"""KFP component `explain`: Score-CAM maps of holdout images and their localisation (steps.explain)."""

from components import CUDA_IMAGE, step_component
from renalmae.steps import explain as step

explain = step_component(step.STEP, CUDA_IMAGE)
