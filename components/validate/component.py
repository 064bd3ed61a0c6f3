"""KFP component `validate`: the data validation suite; a failed rule fails the pipeline (steps.validate)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import validate as step

validate = step_component(step.STEP, CPU_IMAGE)
