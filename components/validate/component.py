"""KFP component `validate`: the data validation suite; a failed rule fails the pipeline (steps.validate)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import declaration

validate = step_component(declaration("validate"), CPU_IMAGE)
