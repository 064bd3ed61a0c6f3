"""KFP component `ingest`: decode the labelled source and the pools once (renalmae.steps.ingest)."""

from components import CPU_IMAGE, step_component
from renalmae.steps import declaration

ingest = step_component(declaration("ingest"), CPU_IMAGE)
