"""The promotion lock: one holder at a time, released after use, broken when its lease has expired."""

from __future__ import annotations

import pytest

from renalmae.errors import GateError
from renalmae.registry.connection import mlflow_client
from renalmae.registry.promote import promotion_lock


@pytest.fixture
def registry(store_uri):
    return mlflow_client(store_uri), store_uri


def _lock_names(client) -> list[str]:
    return [
        model.name for model in client.search_registered_models() if model.name.endswith("--promotion-lock")
    ]


def test_a_second_promoter_gives_up_while_the_lock_is_held(registry):
    client, uri = registry
    with promotion_lock(client, uri, "held-model"):
        with (
            pytest.raises(GateError, match="another promotion of held-model"),
            promotion_lock(client, uri, "held-model", wait_s=0.5),
        ):
            pass
        assert _lock_names(client) == ["held-model--promotion-lock"]
    assert _lock_names(client) == []


def test_an_expired_lock_is_broken(registry):
    client, uri = registry
    stale = promotion_lock(client, uri, "crashed-model", lease_s=-1.0)  # a promoter that never released it
    with stale, promotion_lock(client, uri, "crashed-model", wait_s=5.0) as token:
        tags = client.get_registered_model("crashed-model--promotion-lock").tags
        assert tags["renalmae.lock_token"] == token
    assert _lock_names(client) == []


def test_a_lock_released_while_the_store_answers_taken_is_taken_on_the_next_try(registry, monkeypatch):
    """MLflow's store answers a taken name by looking the holder up; released in between, that look-up
    says "does not exist" (seen under load in the concurrent-promotion test): the promoter tries again."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    client, uri = registry
    create = client.create_registered_model
    answers = iter([MlflowException("Registered Model not found", error_code=RESOURCE_DOES_NOT_EXIST)])

    def released_in_between(*args, **kwargs):
        for error in answers:
            raise error
        return create(*args, **kwargs)

    monkeypatch.setattr(client, "create_registered_model", released_in_between)
    with promotion_lock(client, uri, "busy-model", wait_s=5.0) as token:
        assert client.get_registered_model("busy-model--promotion-lock").tags["renalmae.lock_token"] == token
    assert _lock_names(client) == []
