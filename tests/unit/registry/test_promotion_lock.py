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
