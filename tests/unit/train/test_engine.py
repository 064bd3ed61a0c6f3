import copy

import numpy as np
import pytest
import torch
from trainkit import TinyClassifier, draw_images

from renalmae.params import AugmentParams, TrainParams
from renalmae.train.checkpoint import CHECKPOINT_FILE
from renalmae.train.engine import FitConfig, classification_objective, fit
from renalmae.train.predict import predict_probabilities

TRAIN = TrainParams(device="cpu", cpu_threads=1, progress=False, checkpoint_every_steps=2, log_every_steps=1)
CONFIG = FitConfig(epochs=3, batch_size=8, lr=3e-3, warmup_epochs=1, weight_decay=0.01, clip_grad=1.0, seed=0)


def _data(n: int = 40, seed: int = 0):
    labels = ["normal", "utd"] * (n // 2)
    return draw_images(labels, seed), np.array([label == "utd" for label in labels], dtype=np.int64)


def _model(seed: int = 0) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier()


class Killed(Exception):
    pass


def test_fit_lowers_the_training_loss_and_learns_the_task():
    images, targets = _data()
    config = FitConfig(**{**CONFIG.__dict__, "epochs": 6})
    result = fit(_model(), images, targets, classification_objective(), config, TRAIN, AugmentParams())
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert len(result.step_losses) == 6 * 5


def test_fit_is_deterministic_on_the_cpu_for_a_seed():
    images, targets = _data()
    first, second = _model(), _model()
    fit(first, images, targets, classification_objective(), CONFIG, TRAIN, AugmentParams())
    fit(second, images, targets, classification_objective(), CONFIG, TRAIN, AugmentParams())
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )


def test_a_run_killed_mid_epoch_resumes_to_exactly_the_same_weights(tmp_path):
    images, targets = _data()
    objective = classification_objective(np.array([1.0, 2.0]), label_smoothing=0.1)
    config = FitConfig(**{**CONFIG.__dict__, "class_balance": "sampler"})
    uninterrupted = _model()
    fit(uninterrupted, images, targets, objective, config, TRAIN, AugmentParams())

    def kill_at_step_7(metrics, step):  # 5 steps per epoch: step 7 is mid-epoch 2, last checkpoint at step 6
        if step == 7:
            raise Killed

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(Killed):
        fit(_model(), images, targets, objective, config, TRAIN, AugmentParams(),
            on_metrics=kill_at_step_7, checkpoint_dir=checkpoints, fingerprint="run-a")  # fmt: skip
    assert (checkpoints / CHECKPOINT_FILE).is_file()

    resumed = _model(seed=123)  # another initialisation: the checkpoint must overwrite all of it
    result = fit(resumed, images, targets, objective, config, TRAIN, AugmentParams(),
                 checkpoint_dir=checkpoints, fingerprint="run-a")  # fmt: skip
    assert result.resumed_from_step == 6
    for (name, expected), actual in zip(
        uninterrupted.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(expected, actual), name
    assert not checkpoints.exists(), "the checkpoint is deleted after success"


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, caplog):
    images, targets = _data()
    checkpoints = tmp_path / "ckpt"

    def kill_at_step_3(metrics, step):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        fit(_model(), images, targets, classification_objective(), CONFIG, TRAIN, AugmentParams(),
            on_metrics=kill_at_step_3, checkpoint_dir=checkpoints, fingerprint="run-a")  # fmt: skip
    result = fit(_model(), images, targets, classification_objective(), CONFIG, TRAIN, AugmentParams(),
                 checkpoint_dir=checkpoints, fingerprint="run-b")  # fmt: skip
    assert result.resumed_from_step is None
    assert "other parameters" in caplog.text


def test_early_stopping_keeps_the_best_epochs_weights():
    images, targets = _data()
    scores = iter([0.6, 0.9, 0.7, 0.5, 0.4, 0.3])
    weights_by_epoch = []

    def validate(model):
        weights_by_epoch.append(copy.deepcopy(model.state_dict()))
        return {"val_auc": next(scores)}

    model = _model()
    config = FitConfig(**{**CONFIG.__dict__, "epochs": 6, "early_stopping_patience": 2, "monitor": "val_auc"})
    result = fit(
        model, images, targets, classification_objective(), config, TRAIN, AugmentParams(), validate=validate
    )
    assert result.best_epoch == 1 and result.best_value == pytest.approx(0.9)
    assert result.stopped_early and len(result.history) == 4
    assert all(torch.equal(model.state_dict()[key], value) for key, value in weights_by_epoch[1].items())


def test_predict_probabilities_returns_one_probability_row_per_image():
    images, _ = _data(10)
    probabilities = predict_probabilities(_model(), images, batch_size=4, device="cpu")
    assert probabilities.shape == (10, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
