"""Register → promote → predict against a real `mlflow server` whose artifacts live in (moto) S3."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from registrykit import compared_runs, sample_images, write_validation
from servicekit import ARTIFACT_BUCKET, free_port, s3_client

from renalmae.cli import main
from renalmae.errors import GateError, ModelError, ServiceError
from renalmae.params import params_from_dict
from renalmae.registry.connection import mlflow_client
from renalmae.registry.promote import promote
from renalmae.registry.pyfunc import FoldEnsemble, bundle_ensemble, read_image
from renalmae.registry.serving import load_registered_model
from renalmae.registry.tracking import track_step
from renalmae.run_context import RunContext
from renalmae.steps import register

pytestmark = pytest.mark.integration


def _params(prefix: str, **registry):
    return params_from_dict(
        {"registry": {"model_prefix": prefix, **registry}, "tracking": {"experiment": f"it-{prefix}"}}
    )


def _register(params, root: Path, quality: float, seed: int, validation_ok: bool = True) -> dict:
    run_dirs, comparison = compared_runs(root, "binary", folds=2, quality=quality, seed=seed)
    validation = write_validation(root / "validation", success=validation_ok)
    out = register.run(params, run_dirs, comparison, validation, root / "registered.json")
    return json.loads(out.read_text())["models"][0] | {"run_dirs": [str(path) for path in run_dirs]}


def test_register_promote_refuse_worse_and_predict_with_champion(mlflow_server, postgres, tmp_path, capsys):
    params = _params("flow")
    name = "flow-usfmae-binary"
    client = mlflow_client(mlflow_server.mlflow_url)

    # quality 1.0, seed 1: holdout AUC 0.978 (a perfect 1.0 would leave the comparison undefined)
    first = _register(params, tmp_path / "strong", quality=1.0, seed=1)
    assert first["version"] == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "1"
    promoted = promote(mlflow_server.mlflow_url, name, None, params.registry)
    assert promoted["decision"] == "promoted"
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version == "1"
    assert champion.tags["promotion.decision"] == "promoted"
    assert champion.tags["renalmae.validation_status"] == "passed"
    evaluation_set = champion.tags["renalmae.evaluation_set_sha256"]
    assert champion.tags["promotion.evaluation_set_sha256"] == evaluation_set
    assert champion.tags["promotion.decisions_on_evaluation_set"] == "1"
    assert float(champion.tags["holdout.auc"]) > 0.9
    assert len(champion.tags["renalmae.git_commit"]) >= 7
    # the server keeps the registry in PostgreSQL (its backend store), not in a file of its own
    with postgres.connect() as connection:
        aliases = connection.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (name,)
        ).fetchall()
    assert sorted(aliases) == [("challenger", 1), ("champion", 1)]

    # the model's bytes really are in the S3 bucket
    keys = [
        item["Key"]
        for page in s3_client(mlflow_server.s3_url)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=ARTIFACT_BUCKET)
        for item in page.get("Contents", [])
    ]
    model_id = first["source"].removeprefix("models:/")  # the version's LoggedModel (models-from-code)
    assert any(model_id in key and key.endswith("weights.safetensors") for key in keys)
    assert any(model_id in key and key.endswith("code/renalmae/registry/pyfunc.py") for key in keys)
    assert not any(model_id in key and key.endswith(".pkl") for key in keys)
    assert any(first["run_id"] in key and key.endswith("evaluation/holdout.parquet") for key in keys)

    # a clearly worse candidate is registered as challenger but refused as champion
    second = _register(params, tmp_path / "weak", quality=0.2, seed=7)
    assert second["version"] == "2"
    with pytest.raises(GateError, match="not shown non-inferior to champion v1 on 40 holdout images"):
        promote(mlflow_server.mlflow_url, name, None, params.registry)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    assert "promotion.decision" not in client.get_model_version(name, "2").tags

    # the CLI says the same, in one line, with a non-zero exit
    (tmp_path / "params.yaml").write_text("registry:\n  model_prefix: flow\n")
    capsys.readouterr()
    assert main(["promote", "--model", name, "--params", str(tmp_path / "params.yaml")]) != 0
    error = capsys.readouterr().err
    error_lines = [line for line in error.splitlines() if line.startswith("renalmae promote: error:")]
    assert len(error_lines) == 1 and "not promoted, champion unchanged" in error_lines[0]
    assert "Traceback" not in error
    # three gate decisions were taken on the one holdout set (one pass, two refusals): all counted
    decisions = client.get_registered_model(name).tags[
        f"renalmae.evaluation_set_decisions.{evaluation_set[:16]}"
    ]
    assert decisions == "3"

    # predict through models:/...@champion equals the in-memory fold ensemble of the first run dirs
    image_paths = []
    for index, pixels in enumerate(sample_images(n=3, size=48)):
        image_paths.append(tmp_path / f"image{index}.png")
        Image.fromarray(pixels).save(image_paths[-1])
    argv = ["predict", "--model", f"models:/{name}@champion", *map(str, image_paths), "--json"]
    assert main([*argv, "--params", str(tmp_path / "params.yaml")]) == 0
    served = json.loads(capsys.readouterr().out)
    bundle_ensemble([Path(path) for path in first["run_dirs"]], "normal", tmp_path / "bundle")
    expected = FoldEnsemble(tmp_path / "bundle").predict_proba([read_image(path) for path in image_paths])
    got = np.array([[row["prob_normal"], row["prob_anomaly"]] for row in served])
    np.testing.assert_allclose(got, expected, atol=1e-6)

    models, info = load_registered_model(f"models:/{name}@champion", mlflow_server.mlflow_url)
    assert len(models) == 2 and info["task"] == "binary" and info["classes"] == ["normal", "anomaly"]


def test_two_concurrent_promotions_leave_one_consistent_champion(mlflow_server, tmp_path):
    # this test is about the lock, not the statistics: a wide margin lets both versions pass the gate
    params = _params("race", noninferiority_margin=0.5)
    name = "race-usfmae-binary"
    versions = [
        _register(params, tmp_path / f"run{seed}", quality=1.5, seed=seed)["version"] for seed in (2, 7)
    ]
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def promote_one(version: str) -> None:
        barrier.wait()
        try:
            outcomes[version] = promote(mlflow_server.mlflow_url, name, version, params.registry)
        except Exception as error:  # recorded, asserted below
            outcomes[version] = error

    threads = [threading.Thread(target=promote_one, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert all(isinstance(outcome, dict) for outcome in outcomes.values()), outcomes

    client = mlflow_client(mlflow_server.mlflow_url)
    champion = client.get_model_version_by_alias(name, "champion").version
    previous = {
        version: client.get_model_version(name, version).tags["promotion.previous_champion"]
        for version in versions
    }
    # serialised: the first saw no champion, the second gated against the first and holds the alias
    first, second = sorted(versions, key=lambda version: previous[version] != "None")
    assert previous[first] == "None"
    assert previous[second] == first
    assert champion == second
    assert f"{name}--promotion-lock" not in [model.name for model in client.search_registered_models()]


def test_parallel_steps_of_one_pipeline_run_share_one_parent(mlflow_server, monkeypatch):
    params = params_from_dict({"tracking": {"experiment": "it-parallel"}})
    barrier = threading.Barrier(3)
    step_run_ids: list[str] = []

    def fold_step(fold: int) -> None:
        barrier.wait()
        context = RunContext(pipeline_run_id="parallel-folds")
        with track_step(params, "finetune", context=context, task="binary", fold=fold) as tracker:
            tracker.log_metrics({"train_loss": 1.0 / (fold + 1)}, step=0)
            step_run_ids.append(tracker.run_id)

    threads = [threading.Thread(target=fold_step, args=(fold,)) for fold in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    client = mlflow_client(mlflow_server.mlflow_url)
    experiment = client.get_experiment_by_name("it-parallel")
    parents = client.search_runs([experiment.experiment_id], "tags.`renalmae.role` = 'pipeline'")
    assert len(parents) == 1 and len(step_run_ids) == 3
    assert {client.get_run(run_id).data.tags["mlflow.parentRunId"] for run_id in step_run_ids} == {
        parents[0].info.run_id
    }


def test_unknown_model_is_one_clear_error(mlflow_server):
    with pytest.raises(ModelError, match="no-such-model"):
        promote(mlflow_server.mlflow_url, "no-such-model", None, _params("x").registry)


def test_unknown_alias_is_one_clear_error(mlflow_server):
    mlflow_client(mlflow_server.mlflow_url).create_registered_model("alias-test")
    with pytest.raises(ModelError, match="no-such-alias"):
        load_registered_model("models:/alias-test@no-such-alias", mlflow_server.mlflow_url)


def test_mlflow_server_down_gives_one_service_error_quickly(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    (tmp_path / "params.yaml").write_text("{}\n")
    started = time.monotonic()
    code = main(["promote", "--model", "renal-usfmae-binary", "--params", str(tmp_path / "params.yaml")])
    elapsed = time.monotonic() - started
    error = capsys.readouterr().err
    error_lines = [line for line in error.splitlines() if line.startswith("renalmae promote: error:")]
    assert code != 0
    assert len(error_lines) == 1 and down in error_lines[0] and "unreachable" in error_lines[0]
    assert "Traceback" not in error
    assert elapsed < 30
    with pytest.raises(ServiceError):
        promote(down, "renal-usfmae-binary", None, _params("x").registry)
