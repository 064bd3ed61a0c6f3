"""The model file of every registered version (MLflow models-from-code): MLflow runs this file to load a
version, so loading one runs this readable code and the package copy logged beside it, never a pickle.

`FoldEnsembleModel` comes from the copy of the `renalmae` package logged with the version (its `code/`
folder, which MLflow puts first on `sys.path` before running this file), so a version serves with the
code it was registered with; a process that has imported renalmae already (`renalmae predict`) uses that.
The fold weights are the version's `ensemble` artifact (safetensors).
"""

from mlflow.models import set_model

from renalmae.registry.pyfunc import FoldEnsembleModel

set_model(FoldEnsembleModel())
