"""KFP component `explain`: Score-CAM maps of holdout images and their localisation (steps.explain)."""

from components import CUDA_IMAGE, step_component
from renalmae.steps import declaration

explain = step_component(declaration("explain"), CUDA_IMAGE)
