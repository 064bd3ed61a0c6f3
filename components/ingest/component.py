"""KFP component `ingest`: decode the labelled source and the pools once (renalmae.steps.ingest)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import ingest as step

ingest = step_component(step.STEP, CPU_IMAGE)
