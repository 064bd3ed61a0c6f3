"""MLflow: experiment tracking from every step, and the model registry (register, promote, predict).

`load_registered_model(uri)` (from `renalmae.registry.serving`) is re-exported lazily, so importing the
tracking module from a step does not load MLflow's pyfunc machinery.
"""

from typing import Any

__all__ = ["load_registered_model"]


def __getattr__(name: str) -> Any:
    if name == "load_registered_model":
        from renalmae.registry.serving import load_registered_model

        return load_registered_model
    raise AttributeError(f"module 'renalmae.registry' has no attribute {name!r}")
