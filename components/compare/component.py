"""KFP component `compare`: metrics and statistical comparison of USF-MAE vs the baseline (steps.compare)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import declaration

compare = step_component(declaration("compare"), CPU_IMAGE)
