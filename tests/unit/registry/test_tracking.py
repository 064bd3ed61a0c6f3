"""Tracking: one parent run per pipeline run, nested step runs with lineage tags, nothing when disabled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from renalmae.params import params_from_dict
from renalmae.registry.connection import mlflow_client
from renalmae.registry.lineage import pipeline_run_id
from renalmae.registry.tracking import track_step
from renalmae.run_context import RunContext

ENV_KEYS = (
    "RENALMAE_ENGINE",
    "RENALMAE_PIPELINE_RUN_ID",
    "KFP_RUN_ID",
    "DVC_STAGE",
    "DVC_ROOT",
    "MLFLOW_TRACKING_URI",
)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _params(store_uri: str, **sections):
    return params_from_dict({"tracking": {"tracking_uri": store_uri, "experiment": "unit"}, **sections})


def test_disabled_tracking_writes_nothing(clean_env, tmp_path):
    params = params_from_dict({"tracking": {"enabled": False}})
    (tmp_path / "curve.txt").write_text("1\n")
    with track_step(params, "finetune", task="binary", fold=0) as tracker:
        tracker.log_params({"lr": 1})
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.set_tags({"x": "y"})
        tracker.log_artifact(tmp_path / "curve.txt")
    assert not tracker.enabled
    assert sorted(path.name for path in tmp_path.iterdir()) == ["curve.txt"]


def test_steps_of_one_pipeline_run_nest_under_one_parent(clean_env, store_uri):
    context = RunContext(pipeline_run_id="pipeline-42")
    params = _params(store_uri)
    with track_step(params, "ingest", context=context) as ingest:
        ingest.log_params({"images": 12})
    with track_step(params, "finetune", context=context, task="binary", fold=1) as finetune:
        for epoch, loss in enumerate([0.9, 0.5]):
            finetune.log_metrics({"train_loss": loss}, step=epoch)

    client = mlflow_client(store_uri)
    experiment = client.get_experiment_by_name("unit")
    runs = client.search_runs([experiment.experiment_id], "tags.`renalmae.pipeline_run_id` = 'pipeline-42'")
    parents = [run for run in runs if run.data.tags["renalmae.role"] == "pipeline"]
    steps = {run.data.tags["renalmae.step"]: run for run in runs if run.data.tags["renalmae.role"] == "step"}
    assert len(parents) == 1 and set(steps) == {"ingest", "finetune"}
    assert {run.data.tags["mlflow.parentRunId"] for run in steps.values()} == {parents[0].info.run_id}
    assert parents[0].data.params["finetune.epochs"] == str(params.finetune.epochs)
    finetune_run = steps["finetune"]
    assert finetune_run.data.tags["renalmae.params_hash"] == params.hash()
    assert finetune_run.data.tags["renalmae.engine"] == "cli"
    assert finetune_run.data.tags["renalmae.fold"] == "1"
    assert finetune_run.info.status == "FINISHED"
    history = client.get_metric_history(finetune_run.info.run_id, "train_loss")
    assert [(metric.step, metric.value) for metric in history] == [(0, 0.9), (1, 0.5)]


def test_a_step_inside_dvc_is_tagged_with_engine_and_input_hashes(clean_env, store_uri, tmp_path):
    """The CLI (the runner DVC starts) builds the context from DVC's variables and dvc.lock."""
    from renalmae.launch import cli_run_context

    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  ingest:\n    outs:\n    - path: data/ingested\n      md5: abc123.dir\n"
        "  split:\n    deps:\n    - path: data/ingested\n      md5: abc123.dir\n"
    )
    context = cli_run_context("split", {"DVC_ROOT": str(tmp_path), "DVC_STAGE": "split"})
    params = _params(store_uri)
    with track_step(params, "split", data_version="f00d" * 16, context=context) as tracker:
        pass
    run = mlflow_client(store_uri).get_run(tracker.run_id)
    assert run.data.tags["renalmae.engine"] == "dvc"
    assert run.data.tags["renalmae.data_version"] == "f00d" * 16
    assert run.data.tags["renalmae.dvc_data_version"] == "abc123.dir"
    assert run.data.tags["renalmae.inputs_version"] != "unknown"


def test_a_step_run_carries_mlflows_own_lineage_tags_and_its_input_dataset(clean_env, store_uri):
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    params = _params(store_uri)
    with track_step(params, "split", data_version="be" * 32) as tracker:
        pass
    run = mlflow_client(store_uri).get_run(tracker.run_id)
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["renalmae.git_commit"]
    assert run.data.tags["mlflow.user"] == "alice"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "ingested" and dataset_input.dataset.digest == ("be" * 32)[:36]
    assert json.loads(dataset_input.dataset.source)["tags"]["renalmae.data_version"] == "be" * 32
    assert {tag.key: tag.value for tag in dataset_input.tags}["mlflow.data.context"] == "split"


def test_a_step_without_dvc_lock_records_the_version_of_the_data_it_read(clean_env, store_uri, tmp_path):
    """A KFP pod has no dvc.lock of its run: the data version is the hash of the table the step read."""
    from renalmae.artifacts import IngestedData
    from renalmae.steps import ingest

    clean_env.chdir(tmp_path)
    data = {"source": "phantom://renal?n=30&seed=0", "pool": [], "image_size": 32, "decode_workers": 0}
    params = _params(store_uri, data=data)
    version = IngestedData(ingest.run(params, tmp_path / "ingested")).content_hash()
    with track_step(params, "finetune", version, RunContext(engine="kfp"), task="binary", fold=0) as tracker:
        pass
    tags = mlflow_client(store_uri).get_run(tracker.run_id).data.tags
    assert tags["renalmae.engine"] == "kfp"
    assert tags["renalmae.data_version"] == version and len(version) == 64
    assert tags["renalmae.dvc_data_version"] == "unknown"


def test_a_failing_step_marks_its_run_failed(clean_env, store_uri):
    context = RunContext(pipeline_run_id="pipeline-failing")
    with pytest.raises(RuntimeError), track_step(_params(store_uri), "pretrain", context=context) as tracker:
        raise RuntimeError("boom")
    assert mlflow_client(store_uri).get_run(tracker.run_id).info.status == "FAILED"


def test_pipeline_run_id_without_env_is_stable_and_follows_params(clean_env):
    base = params_from_dict({})
    changed = params_from_dict({"finetune": {"epochs": 99}})
    assert pipeline_run_id(base) == pipeline_run_id(base)
    assert pipeline_run_id(base) != pipeline_run_id(changed)
    assert pipeline_run_id(base).startswith("cli-")


def test_kfp_run_id_names_the_pipeline_run(clean_env):
    """A KFP pod's run context carries the run id of its pod's label (the DAG maps it to KFP_RUN_ID)."""
    from renalmae.kfp_io import run_context

    context = run_context("finetune", {"KFP_RUN_ID": "kfp-run-7"})
    assert (context.engine, pipeline_run_id(params_from_dict({}), context)) == ("kfp", "kfp-run-7")


def test_the_library_reads_no_runner_variable(clean_env, store_uri):
    """Runner variables reach lineage only through the context a runner builds."""
    for key, value in {"DVC_STAGE": "split", "KFP_RUN_ID": "k", "RENALMAE_ENGINE": "kfp",
                       "RENALMAE_PIPELINE_RUN_ID": "p"}.items():  # fmt: skip
        clean_env.setenv(key, value)
    with track_step(_params(store_uri), "split") as tracker:
        pass
    tags = mlflow_client(store_uri).get_run(tracker.run_id).data.tags
    assert tags["renalmae.engine"] == "cli" and tags["renalmae.pipeline_run_id"].startswith("cli-")


def test_unreachable_server_is_one_service_error(clean_env):
    from renalmae.errors import ServiceError

    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    clean_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    params = params_from_dict({"tracking": {"tracking_uri": "http://127.0.0.1:9"}})
    with pytest.raises(ServiceError, match="127.0.0.1:9"), track_step(params, "ingest"):
        pass
    assert not Path("mlflow.db").exists()


def test_artifacts_of_an_embedded_store_live_beside_its_database_not_in_the_working_directory(
    clean_env, tmp_path
):
    """MLflow's default artifact root for a sqlite store is ./mlruns of the working directory: the test
    suite (run from the checkout) left mlruns/ in the repository root."""
    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    clean_env.chdir(work)
    (tmp_path / "curve.txt").write_text("1\n")
    params = params_from_dict({"tracking": {"tracking_uri": f"sqlite:///{store}", "experiment": "beside"}})

    with track_step(params, "finetune", task="binary", fold=0) as tracker:
        tracker.log_artifact(tmp_path / "curve.txt")

    assert not (work / "mlruns").exists()
    assert list((tmp_path / "store" / "mlruns").rglob("curve.txt"))
