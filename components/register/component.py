"""KFP component `register`: log the models to MLflow and register `challenger` versions (steps.register)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import register as step

register = step_component(step.STEP, CPU_IMAGE)
