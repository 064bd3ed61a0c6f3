"""`renalmae promote --model NAME` with a name no model has: the registered names, closest first."""

from __future__ import annotations

import pytest

from renalmae.errors import ModelError
from renalmae.params import RegistryParams
from renalmae.registry.connection import mlflow_client
from renalmae.registry.promote import promote


def test_a_misspelled_model_name_is_refused_with_the_registered_names(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    with pytest.raises(ModelError, match="none is registered yet: run `make run`"):
        promote(uri, "renal-usfmae-binary", None, RegistryParams())

    for name in ("renal-usfmae-binary", "renal-densenet169-binary", "renal-usfmae-binary--promotion-lock"):
        client.create_registered_model(name)
    with pytest.raises(ModelError) as error:
        promote(uri, "renal-usfmae-binnary", None, RegistryParams())

    message = str(error.value)
    assert message.startswith("no registered model is called 'renal-usfmae-binnary' in sqlite:///")
    assert "did you mean renal-usfmae-binary" in message
    assert message.endswith("registered: renal-densenet169-binary, renal-usfmae-binary")  # no lock models


def test_every_registered_name_is_searched_and_a_long_list_is_cut(tmp_path):
    """Names come page by page (the store answers 100 at a time by default); the message lists 20."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow_client(uri)
    for index in range(105):
        client.create_registered_model(f"model-{index:03d}")
    with pytest.raises(ModelError) as error:
        promote(uri, "model-104x", None, RegistryParams())

    message = str(error.value)
    assert "did you mean model-104" in message
    assert message.endswith("model-019, … (105 in all)")
