"""KFP component `register`: log the models to MLflow and register `challenger` versions (steps.register)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import declaration

register = step_component(declaration("register"), CPU_IMAGE)
