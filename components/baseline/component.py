"""KFP component `baseline`: train the DenseNet-169 baseline on one fold of one task (steps.baseline)."""

from components import CUDA_IMAGE, step_component
from renalmae.steps import declaration

baseline = step_component(declaration("baseline"), CUDA_IMAGE)
