import json

import numpy as np
import pandas as pd
import pytest
import torch
from trainkit import tiny_params, write_ingest, write_splits

from renalmae.data.predictions import read_predictions
from renalmae.errors import DataError, ModelError, ParamsError
from renalmae.initialisation import describe_initialisation
from renalmae.models import create_model, load_trained_model
from renalmae.pipeline import Target
from renalmae.steps import baseline, finetune, pretrain
from renalmae.steps.pretrain import pretraining_ids

SMALL_CNN = {"arch": "resnet10t", "epochs": 1, "batch_size": 16, "base_lr": 3e-3}


@pytest.fixture
def encoder_dir(tmp_path, dataset, params):
    ingest_dir, splits_path = dataset
    return pretrain.run(params, ingest_dir, splits_path, tmp_path / "pretrain")


def test_pretrain_writes_the_encoder_loss_curve_and_reconstructions(encoder_dir, dataset):
    metrics = json.loads((encoder_dir / "metrics.json").read_text())
    assert metrics["images"] == 24  # the pool (pretrain.include_development is false), never the holdout test
    for name in ("encoder.safetensors", "encoder.json", "loss.csv", "loss.png", "reconstructions.png"):
        assert (encoder_dir / name).is_file(), name
    loss = pd.read_csv(encoder_dir / "loss.csv")
    assert list(loss.columns) == ["epoch", "step", "loss"] and np.isfinite(loss["loss"]).all()
    assert not (encoder_dir.parent / ".checkpoints").exists()


def test_pretraining_pool_never_contains_holdout_test_ids(dataset):
    table = pd.read_parquet(dataset[0] / "table.parquet")
    splits = json.loads(dataset[1].read_text())
    development = [i for fold in splits["folds"] for i in fold["val"]]
    ids = pretraining_ids(table, development, splits["test"])
    assert not set(ids) & set(splits["test"])
    with pytest.raises(DataError, match="holdout test"):
        pretraining_ids(table, development + splits["test"][:1], splits["test"])


def test_pretrain_refuses_an_empty_pool(tmp_path, params):
    table = write_ingest(tmp_path / "ingested", ["normal"] * 4, pool=0)
    folds = [{"fold": 0, "val": []}, {"fold": 1, "val": []}]
    splits = {"k_folds": 2, "seed": 0, "origin": "drawn", "test": table["id"].tolist(), "folds": folds}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(DataError, match="pool is empty"):
        pretrain.run(params, tmp_path / "ingested", tmp_path / "splits.json", tmp_path / "out")


def test_finetune_writes_predictions_for_validation_and_holdout_and_learns(
    tmp_path, dataset, encoder_dir, params
):
    ingest_dir, splits_path = dataset
    run_dir = finetune.train_run(
        params, ingest_dir, splits_path, encoder_dir, Target("binary", 0), tmp_path / "ft" / "fold0"
    )
    table = read_predictions(run_dir / "predictions.parquet", ["normal", "anomaly"])
    splits = json.loads(splits_path.read_text())
    assert set(table.loc[table["split"] == "val", "id"]) == set(splits["folds"][0]["val"])
    assert set(table.loc[table["split"] == "test", "id"]) == set(splits["test"])
    assert (table["model"] == "usfmae").all()
    assert json.loads((run_dir / "run.json").read_text())["role"] == "candidate"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "train_seconds" not in metrics  # same run, same bytes: DVC hashes this file
    assert metrics["val_auc"] > 0.5
    model, info = load_trained_model(run_dir)
    assert info["classes"] == ["normal", "anomaly"] and info["best_epoch"] is not None
    assert len(pd.read_csv(run_dir / "history.csv")) == metrics["epochs_run"]
    initialisation = info["initialisation"]
    assert initialisation["method"] == "mae-pretraining"
    assert (
        initialisation["mae_pretraining"]["images"]
        == json.loads((encoder_dir / "metrics.json").read_text())["images"]
    )
    assert describe_initialisation(initialisation).startswith(
        f"MAE pretraining here on {initialisation['mae_pretraining']['images']} images (24 unlabelled from "
    )
    assert describe_initialisation(initialisation).endswith("of a randomly initialised encoder")


def test_baseline_from_a_checkpoint_records_its_file_and_pretraining_data(tmp_path, dataset):
    ingest_dir, splits_path = dataset
    weights = tmp_path / "resnet10t_imagenet.pth"
    torch.save(create_model("cnn", tiny_params(baseline=SMALL_CNN), num_classes=2).state_dict(), weights)
    params = tiny_params(
        baseline={**SMALL_CNN, "init_checkpoint": str(weights), "init_checkpoint_data": "ImageNet-1k"}
    )
    run_dir = baseline.train_run(params, ingest_dir, splits_path, Target("binary", 0), tmp_path / "bl")
    initialisation = json.loads((run_dir / "run.json").read_text())["initialisation"]
    assert (
        initialisation["checkpoint"] == str(weights) and initialisation["pretraining_data"] == "ImageNet-1k"
    )
    assert len(initialisation["checkpoint_sha256"]) == 64 and initialisation["load"]["loaded"] > 0
    assert describe_initialisation(initialisation) == f"checkpoint {weights} (pretrained on ImageNet-1k)"


def test_baseline_trains_a_cnn_with_the_same_outputs(tmp_path, dataset):
    ingest_dir, splits_path = dataset
    params = tiny_params(baseline=SMALL_CNN)
    run_dir = baseline.train_run(
        params, ingest_dir, splits_path, Target("multiclass", 1), tmp_path / "bl" / "fold1"
    )
    table = read_predictions(run_dir / "predictions.parquet", ["normal", "utd", "mcdk"])
    assert set(table["split"]) == {"val", "test"} and (table["model"] == "resnet10t").all()
    assert (run_dir / "weights.safetensors").is_file() and (run_dir / "metrics.json").is_file()
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["model"], info["role"]) == ("resnet10t", "baseline")  # named after baseline.arch


def test_finetune_refuses_a_fold_outside_k(tmp_path, dataset, params):
    with pytest.raises(ParamsError, match="fold 5 is outside"):
        finetune.train_run(params, *dataset, tmp_path / "none", Target("binary", 5), tmp_path / "out")


def test_baseline_refuses_an_unknown_task(tmp_path, dataset, params):
    with pytest.raises(DataError, match="unknown task"):
        baseline.train_run(params, *dataset, Target("ternary", 0), tmp_path / "out")


def test_baseline_refuses_an_unknown_model_name(tmp_path, dataset):
    params = tiny_params(baseline={"arch": "densenet1690"})
    with pytest.raises(ModelError, match="unknown timm model"):
        baseline.train_run(params, *dataset, Target("binary", 0), tmp_path / "out")


def test_baseline_refuses_a_checkpoint_of_another_architecture(tmp_path, dataset):
    vit_weights = tmp_path / "vit.pth"
    torch.save(create_model("vit", tiny_params(), num_classes=2).state_dict(), vit_weights)
    params = tiny_params(
        baseline={**SMALL_CNN, "init_checkpoint": str(vit_weights), "init_checkpoint_data": "a ViT run"}
    )
    with pytest.raises(ModelError, match="vit.pth"):
        baseline.train_run(params, *dataset, Target("binary", 0), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_finetune_refuses_a_missing_encoder(tmp_path, dataset, params):
    with pytest.raises(ModelError, match="run pretrain first"):
        finetune.train_run(params, *dataset, tmp_path / "no-encoder", Target("binary", 0), tmp_path / "out")


def test_fold_without_a_class_in_training_is_refused(tmp_path, params):
    table = write_ingest(tmp_path / "ingested", ["normal"] * 20 + ["utd"] * 2, pool=0)
    write_splits(tmp_path / "splits.json", table, k=2, test_fraction=0.5)
    # no selection split: its own refusal (too few groups) would come first on a fold this small
    params = tiny_params(baseline=SMALL_CNN, train={"selection_fraction": 0.0})
    with pytest.raises(DataError, match="no training images"):
        baseline.train_run(
            params, tmp_path / "ingested", tmp_path / "splits.json", Target("binary", 0), tmp_path / "out"
        )


def test_a_training_step_repeats_exactly_whatever_ran_before_it(tmp_path, dataset):
    params = tiny_params(baseline=SMALL_CNN)
    first = baseline.train_run(params, *dataset, Target("binary", 0), tmp_path / "first")
    torch.rand(1000)  # another process (or test) would have drawn different random numbers
    second = baseline.train_run(params, *dataset, Target("binary", 0), tmp_path / "second")
    first_model, _ = load_trained_model(first)
    second_model, _ = load_trained_model(second)
    for (name, value), other in zip(
        first_model.state_dict().items(), second_model.state_dict().values(), strict=True
    ):
        assert torch.equal(value, other), name


def test_one_call_trains_every_task_fold_and_repeat_each_seeded_by_its_repeat(tmp_path, dataset):
    """What a DVC stage runs: every target of the params in one process; repeat r is seeded seed + r, and
    repeat 0 is the run a single call of the same target makes."""
    params = tiny_params(baseline=SMALL_CNN, split={"folds": [0, 1]}, evaluate={"repeats": 2})

    root = baseline.run(params, *dataset, tmp_path / "all")

    runs = sorted(str(path.parent.relative_to(root)) for path in root.rglob("run.json"))
    assert runs == ["binary/fold0", "binary/fold0-repeat1", "binary/fold1", "binary/fold1-repeat1"]
    assert [json.loads((root / run / "run.json").read_text())["repeat"] for run in runs] == [0, 1, 0, 1]
    single = baseline.train_run(params, *dataset, Target("binary", 0), tmp_path / "single")
    assert (single / "weights.safetensors").read_bytes() == (
        root / "binary/fold0/weights.safetensors"
    ).read_bytes()
    assert (root / "binary/fold0-repeat1/weights.safetensors").read_bytes() != (
        root / "binary/fold0/weights.safetensors"
    ).read_bytes()


def test_a_tracked_training_run_carries_the_context_its_runner_built(tmp_path, dataset):
    from renalmae.registry.connection import mlflow_client
    from renalmae.run_context import RunContext

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = tiny_params(
        baseline=SMALL_CNN, tracking={"enabled": True, "tracking_uri": uri, "experiment": "t"}
    )
    context = RunContext(engine="dvc", pipeline_run_id="run-9", stage="baseline", git_commit="abc")

    baseline.train_run(params, *dataset, Target("binary", 0), tmp_path / "bl", context)

    client = mlflow_client(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("t").experiment_id], "tags.`renalmae.role` = 'step'"
    )
    tags = run.data.tags
    assert (tags["renalmae.engine"], tags["renalmae.pipeline_run_id"], tags["renalmae.git_commit"]) == (
        "dvc", "run-9", "abc"
    )  # fmt: skip
