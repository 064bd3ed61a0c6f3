"""Pools larger than the device budget stream from the memory-mapped cache and train as if resident."""

import json
import threading

import numpy as np
import pytest
import torch
from trainkit import TinyClassifier, draw_images, tiny_params

from renalmae.params import AugmentParams, TrainParams
from renalmae.train.data import (
    BatchSampler,
    CachedImages,
    ResidentImages,
    StreamedImages,
    batch_source,
)
from renalmae.train.engine import FitConfig, classification_objective, fit

CONFIG = FitConfig(epochs=3, batch_size=8, lr=3e-3, warmup_epochs=1, weight_decay=0.01, clip_grad=1.0, seed=0)
RESIDENT = TrainParams(
    device="cpu", cpu_threads=1, progress=False, checkpoint_every_steps=2, log_every_steps=1
)


class Killed(Exception):
    pass


@pytest.fixture
def cached(tmp_path) -> tuple[CachedImages, np.ndarray]:
    """40 of the 60 rows of a memory-mapped cache file, not in cache order, and their targets."""
    labels = ["normal", "utd"] * 30
    np.save(tmp_path / "images.npy", draw_images(labels, seed=0))
    cache = np.load(tmp_path / "images.npy", mmap_mode="r")
    rows = np.concatenate([np.arange(59, 19, -2), np.arange(0, 40, 2)])
    targets = np.array([labels[row] == "utd" for row in rows], dtype=np.int64)
    return CachedImages(cache, rows), targets


def budget_below(images: CachedImages) -> TrainParams:
    """The resident settings with a device budget of a quarter of the images: they must stream."""
    return TrainParams(**{**RESIDENT.model_dump(), "device_cache_bytes": images.nbytes // 4})


def _model() -> TinyClassifier:
    torch.manual_seed(0)
    return TinyClassifier()


def _same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    return all(torch.equal(a, b) for a, b in pairs)


def test_a_streamed_run_equals_the_resident_run_step_for_step(cached):
    images, targets = cached
    objective = classification_objective()
    resident, streamed = _model(), _model()
    in_memory = np.asarray(images.cache[images.rows])  # what resident runs were given before

    kept = fit(resident, in_memory, targets, objective, CONFIG, RESIDENT, AugmentParams())
    flowed = fit(streamed, images, targets, objective, CONFIG, budget_below(images), AugmentParams())

    assert not kept.streamed and flowed.streamed
    assert len(flowed.step_losses) == 3 * 5
    assert flowed.step_losses == kept.step_losses, "every step's loss is the same"
    assert _same_weights(resident, streamed)


def test_a_streamed_run_killed_mid_epoch_resumes_to_exactly_the_same_weights(cached, tmp_path):
    images, targets = cached
    train = budget_below(images)
    uninterrupted = _model()
    fit(uninterrupted, images, targets, classification_objective(), CONFIG, train, AugmentParams())

    def kill_at_step_7(metrics, step):  # the reader has run ahead of step 7 by then; the checkpoint is at 6
        if step == 7:
            raise Killed

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(Killed):
        fit(_model(), images, targets, classification_objective(), CONFIG, train, AugmentParams(),
            on_metrics=kill_at_step_7, checkpoint_dir=checkpoints, fingerprint="run-a")  # fmt: skip
    resumed = _model()
    result = fit(resumed, images, targets, classification_objective(), CONFIG, train, AugmentParams(),
                 checkpoint_dir=checkpoints, fingerprint="run-a")  # fmt: skip
    assert result.resumed_from_step == 6 and result.streamed
    assert _same_weights(uninterrupted, resumed)


def test_the_batch_reader_stops_when_the_loop_stops(cached):
    images, targets = cached

    def kill_at_step_2(metrics, step):
        if step == 2:
            raise Killed

    with pytest.raises(Killed):
        fit(_model(), images, targets, classification_objective(), CONFIG, budget_below(images),
            AugmentParams(), on_metrics=kill_at_step_2)  # fmt: skip
    assert not [thread for thread in threading.enumerate() if thread.name == "renalmae-batch-reader"]


class UnreadableCache(np.ndarray):
    """A cache whose reads fail, like a memory map over a file truncated under the run."""

    def __getitem__(self, key):
        raise OSError("Input/output error")


def test_a_read_error_in_the_reader_surfaces_in_the_training_loop(cached):
    images, targets = cached
    broken = CachedImages(np.asarray(images.cache).view(UnreadableCache), images.rows)
    with pytest.raises(OSError, match="Input/output error"):
        fit(_model(), broken, targets, classification_objective(), CONFIG, budget_below(images),
            AugmentParams())  # fmt: skip


def test_the_source_is_resident_within_the_budget_and_streamed_above_it(cached):
    images, _ = cached
    cpu = torch.device("cpu")
    assert isinstance(batch_source(images, cpu, images.nbytes), ResidentImages)
    assert isinstance(batch_source(images, cpu, images.nbytes - 1), StreamedImages)
    assert isinstance(batch_source(images, cpu, None), ResidentImages), "the default budget holds a tiny set"


def test_both_sources_hand_the_loop_the_same_batches(cached):
    images, _ = cached
    cpu = torch.device("cpu")
    resident = list(ResidentImages(images, cpu).batches(BatchSampler(len(images), 8, seed=3)))
    streamed = list(StreamedImages(images, cpu, prefetch=2).batches(BatchSampler(len(images), 8, seed=3)))
    assert len(resident) == len(streamed) == 5
    for (position, indices, batch), (position_b, indices_b, batch_b) in zip(resident, streamed, strict=True):
        assert position == position_b and torch.equal(indices, indices_b) and torch.equal(batch, batch_b)
        assert np.array_equal(batch_b.numpy(), images.cache[images.rows[indices.numpy()]])


def test_cached_images_read_rows_in_the_order_asked(cached):
    images, _ = cached
    order = np.array([7, 0, 39, 12, 12])
    np.testing.assert_array_equal(images.read(order), images.cache[images.rows[order]])


def test_pretrain_streams_a_pool_over_the_budget_to_the_same_encoder(tmp_path, dataset):
    from safetensors.numpy import load_file

    from renalmae.steps import pretrain

    ingest_dir, splits_path = dataset
    one_epoch = {"epochs": 1, "batch_size": 16}
    small_budget = tiny_params(train={"device_cache_bytes": 4096}, pretrain=one_epoch)
    resident = pretrain.run(tiny_params(pretrain=one_epoch), ingest_dir, splits_path, tmp_path / "resident")
    streamed = pretrain.run(small_budget, ingest_dir, splits_path, tmp_path / "streamed")

    assert json.loads((streamed / "metrics.json").read_text())["streamed"]
    assert not json.loads((resident / "metrics.json").read_text())["streamed"]
    assert (streamed / "loss.csv").read_text() == (resident / "loss.csv").read_text()
    expected = load_file(resident / "encoder.safetensors")
    actual = load_file(streamed / "encoder.safetensors")
    assert expected.keys() == actual.keys()
    assert all(np.array_equal(expected[name], actual[name]) for name in expected)
