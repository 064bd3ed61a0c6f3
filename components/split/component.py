"""KFP component `split`: grouped stratified folds plus a grouped holdout test set (steps.split)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import declaration

split = step_component(declaration("split"), CPU_IMAGE)
