"""The MAE pool policy (`pretrain.include_development`) and fine-tuning a published encoder without
pretraining (`pretrain.epochs: 0` + `pretrain.init_checkpoint`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from trainkit import tiny_params

from renalmae.errors import ParamsError
from renalmae.models import create_model, load_encoder, load_init_checkpoint
from renalmae.models.checkpoints import encoder_state_dict
from renalmae.pipeline import Target
from renalmae.steps import finetune, pretrain
from renalmae.steps.pretrain import pretraining_ids


def _development(splits_path) -> list[str]:
    return [image_id for fold in json.loads(splits_path.read_text())["folds"] for image_id in fold["val"]]


def test_by_default_the_mae_pool_is_the_unlabelled_pool_only(tmp_path, dataset, params):
    ingest_dir, splits_path = dataset
    encoder_dir = pretrain.run(params, ingest_dir, splits_path, tmp_path / "pretrain")
    metrics = json.loads((encoder_dir / "metrics.json").read_text())
    assert metrics["images"] == 24  # the pool; no labelled image
    _, info = load_encoder(encoder_dir)
    assert info["pretraining_data"]["include_development"] is False
    assert info["pretraining_data"]["transductive"] is False
    assert info["pretraining_data"]["development_images"] == 0


def test_include_development_adds_the_training_images_and_flags_the_run_transductive(tmp_path, dataset):
    ingest_dir, splits_path = dataset
    params = tiny_params(pretrain={"include_development": True, "epochs": 1})
    encoder_dir = pretrain.run(params, ingest_dir, splits_path, tmp_path / "pretrain")
    metrics = json.loads((encoder_dir / "metrics.json").read_text())
    assert metrics["images"] == 24 + len(_development(splits_path))
    assert metrics["pretraining_data"]["transductive"] is True
    table = pd.read_parquet(ingest_dir / "table.parquet")
    test_ids = json.loads(splits_path.read_text())["test"]
    pool = pretraining_ids(table, _development(splits_path), test_ids, include_development=True)
    assert not set(pool) & set(test_ids)


def test_zero_epochs_fine_tune_the_published_encoder_as_it_is(tmp_path, dataset):
    ingest_dir, splits_path = dataset
    published = create_model("mae", tiny_params())
    torch.save({"model": published.state_dict()}, tmp_path / "published.pth")
    published_params = {
        "init_checkpoint": str(tmp_path / "published.pth"),
        "init_checkpoint_data": "a test pool",
    }
    params = tiny_params(pretrain={"epochs": 0, **published_params})
    encoder_dir = pretrain.run(params, ingest_dir, splits_path, tmp_path / "pretrain")
    state, info = load_encoder(encoder_dir)
    loaded = create_model("mae", params)
    load_init_checkpoint(
        loaded, tmp_path / "published.pth", normalisation=params.pretrain.init_checkpoint_norm
    )
    for key, value in encoder_state_dict(loaded).items():
        assert torch.equal(state[key], value), key  # the published encoder as loaded: no training step
    metrics = json.loads((encoder_dir / "metrics.json").read_text())
    assert metrics["steps"] == 0 and metrics["images"] == 0 and metrics["final_loss"] is None
    assert info["pretraining_data"]["transductive"] is False and info["pretraining_data"]["epochs"] == 0
    assert pd.read_csv(encoder_dir / "loss.csv").empty
    assert (encoder_dir / "reconstructions.png").is_file() and (encoder_dir / "loss.png").is_file()
    run_dir = finetune.train_run(
        params, ingest_dir, splits_path, encoder_dir, Target("binary", 0), tmp_path / "ft"
    )
    initialisation = json.loads((run_dir / "run.json").read_text())["initialisation"]
    assert initialisation["mae_pretraining"]["epochs"] == 0
    assert initialisation["encoder_initialisation"]["checkpoint"].endswith("published.pth")


def test_zero_epochs_without_a_checkpoint_are_refused():
    with pytest.raises(
        ParamsError, match=r"pretrain.*epochs: 0 skips pretraining, so it needs init_checkpoint"
    ):
        tiny_params(pretrain={"epochs": 0})
