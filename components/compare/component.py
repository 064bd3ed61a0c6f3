"""KFP component `compare`: metrics and statistical comparison of USF-MAE vs the baseline (steps.compare)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import compare as step

compare = step_component(step.STEP, CPU_IMAGE)
