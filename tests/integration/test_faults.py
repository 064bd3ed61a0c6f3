"""Faults: S3 vanishing in the middle of `register` must not leave an alias on a broken version."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest
from registrykit import compared_runs, sample_images, write_validation
from s3proxy import S3Proxy
from servicekit import ARTIFACT_BUCKET, DUMMY_AWS, Services, s3_client, start_mlflow, start_s3

from renalmae.errors import ServiceError
from renalmae.params import params_from_dict
from renalmae.registry.connection import mlflow_client
from renalmae.registry.promote import promote
from renalmae.registry.serving import load_ensemble
from renalmae.steps import register

pytestmark = pytest.mark.integration


@pytest.fixture
def pair_behind_proxy(tmp_path_factory, postgres):
    """A separate moto + MLflow pair (own database) whose MLflow reaches S3 only through an `S3Proxy`."""
    run_dir = tmp_path_factory.mktemp("fault-services")
    services = Services(run_dir, "", "")
    try:
        services.s3_url = start_s3(run_dir)
        s3_client(services.s3_url).create_bucket(Bucket=ARTIFACT_BUCKET)
        proxy = S3Proxy(urlparse(services.s3_url).port).start()
        # few, fast S3 retries on the server side, so the outage surfaces within seconds
        retries = {"AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard"}
        database = postgres.create_database("mlflow_faults")
        services.mlflow_url = start_mlflow(run_dir, proxy.url, postgres, database, **retries)
        yield services, proxy
        proxy.stop()
    finally:
        services.stop()


def test_s3_down_during_register_keeps_aliases_on_whole_versions(pair_behind_proxy, monkeypatch, tmp_path):
    services, proxy = pair_behind_proxy
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", services.mlflow_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)
    params = params_from_dict({"registry": {"model_prefix": "fault"}})
    name = "fault-usfmae-binary"
    validation = write_validation(tmp_path / "validation")

    first_dirs, first_comparison = compared_runs(tmp_path / "first", "binary", folds=2, seed=0)
    register.run(params, first_dirs, first_comparison, validation, tmp_path / "registered.json")
    promote(services.mlflow_url, name, None, params.registry)
    registered_before = json.loads((tmp_path / "registered.json").read_text())

    # S3 goes away at the first upload of model weights of the next registration
    proxy.trip_on = b"weights.safetensors"
    second_dirs, second_comparison = compared_runs(tmp_path / "second", "binary", folds=2, seed=1)
    with pytest.raises(ServiceError):
        register.run(params, second_dirs, second_comparison, validation, tmp_path / "registered.json")
    assert proxy.tripped.is_set()

    client = mlflow_client(services.mlflow_url)
    versions = client.search_model_versions(f"name = '{name}'")
    assert [version.version for version in versions] == ["1"]
    aliases = client.get_registered_model(name).aliases
    assert aliases == {"challenger": "1", "champion": "1"}
    # register writes its report only on success
    assert json.loads((tmp_path / "registered.json").read_text()) == registered_before

    # S3 back (its data intact, as after an outage): the champion still loads and predicts
    proxy.trip_on = None
    proxy.start()
    champion = load_ensemble(f"models:/{name}@champion", services.mlflow_url)
    probabilities = champion.predict_proba(sample_images(n=2))
    assert probabilities.shape == (2, 2)
