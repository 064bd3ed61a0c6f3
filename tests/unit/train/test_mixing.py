"""The MAE fine-tuning recipe's batch regularisers: random erasing, mixup / CutMix (timm) and the
soft-target loss, inside the one training loop."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from trainkit import TinyClassifier, draw_images, tiny_params

from renalmae.errors import ParamsError
from renalmae.params import AugmentParams, FinetuneParams, TrainParams
from renalmae.train.augment import batch_erasing, batch_mixup
from renalmae.train.checkpoint import CHECKPOINT_FILE
from renalmae.train.classifier import (
    FoldData,
    classifier_objective,
    soft_target_cross_entropy,
    train_classifier,
)
from renalmae.train.engine import FitConfig, fit

MAE_RECIPE = {"mixup": 0.8, "cutmix": 1.0, "random_erasing": 0.25, "label_smoothing": 0.1}


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 16, 16, generator=generator), torch.arange(n) % 2


def test_mixup_mixes_images_and_targets_with_the_same_lambda():
    mixup = batch_mixup(FinetuneParams(mixup=0.8, label_smoothing=0.0), num_classes=2)
    inputs, targets = _batch()
    np.random.seed(3)
    mixed, soft = mixup(inputs.clone(), targets)
    lam = soft[0, targets[0]].item()  # batch mode: one λ; sample 0 is mixed with the last one
    assert 0 < lam < 1 and targets[0] != targets[-1]
    torch.testing.assert_close(mixed, lam * inputs + (1 - lam) * inputs.flip(0))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(8))


def test_cutmix_pastes_a_box_from_the_reversed_batch_and_weights_targets_by_its_area():
    mixup = batch_mixup(FinetuneParams(cutmix=1.0, label_smoothing=0.0), num_classes=2)
    inputs, targets = _batch()
    np.random.seed(0)
    mixed, soft = mixup(inputs.clone(), targets)
    pasted = ~torch.isclose(mixed, inputs)
    assert torch.equal(mixed[pasted], inputs.flip(0)[pasted])
    kept_fraction = 1 - pasted[0].float().mean().item()
    assert soft[0, targets[0]].item() == pytest.approx(kept_fraction, abs=1e-6)


def test_label_smoothing_is_folded_into_the_mixed_targets():
    mixup = batch_mixup(FinetuneParams(mixup=0.8, label_smoothing=0.1), num_classes=2)
    inputs, targets = _batch()
    np.random.seed(1)
    _, soft = mixup(inputs.clone(), targets)
    assert soft.min() >= 0.05 - 1e-6 and soft.max() <= 0.95 + 1e-6


def test_random_erasing_fills_one_box_per_chosen_image_with_noise():
    erase = batch_erasing(1.0)
    inputs, _ = _batch()
    torch.manual_seed(0)
    erased = erase(inputs.clone())
    changed = (erased != inputs).flatten(1).float().mean(dim=1)
    assert (changed > 0.01).all() and (changed < 0.5).all()  # timm: 2 % to 1/3 of the image
    assert batch_erasing(0.0) is None and batch_mixup(FinetuneParams(), 2) is None


def test_soft_target_loss_is_cross_entropy_for_one_hot_targets_with_class_weights():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([0.5, 1.0, 2.0])
    expected = F.cross_entropy(logits, targets, weight=weights)
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, F.one_hot(targets, 3).float(), weights), expected
    )
    torch.testing.assert_close(
        soft_target_cross_entropy(logits, F.one_hot(targets, 3).float()), F.cross_entropy(logits, targets)
    )


class Killed(Exception):
    pass


def test_a_run_with_the_mae_recipe_killed_mid_epoch_resumes_to_exactly_the_same_weights(tmp_path):
    """Mixup's and random erasing's random numbers (NumPy, Python, torch) are part of the checkpoint."""
    labels = ["normal", "utd"] * 20
    images, targets = draw_images(labels, 0), np.array([label == "utd" for label in labels], dtype=np.int64)
    objective = classifier_objective(FinetuneParams(**MAE_RECIPE), 2, np.array([1.0, 2.0]))
    train = TrainParams(
        device="cpu", cpu_threads=1, progress=False, checkpoint_every_steps=2, log_every_steps=1
    )
    config = FitConfig(epochs=3, batch_size=8, lr=3e-3, warmup_epochs=1, weight_decay=0.01, seed=0)

    def model(seed: int = 0) -> TinyClassifier:
        torch.manual_seed(seed)
        return TinyClassifier()

    uninterrupted = model()
    fit(uninterrupted, images, targets, objective, config, train, AugmentParams())

    def kill_at_step_7(metrics, step):
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        fit(model(), images, targets, objective, config, train, AugmentParams(),
            on_metrics=kill_at_step_7, checkpoint_dir=tmp_path, fingerprint="mixup")  # fmt: skip
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    resumed = model(seed=9)
    result = fit(resumed, images, targets, objective, config, train, AugmentParams(),
                 checkpoint_dir=tmp_path, fingerprint="mixup")  # fmt: skip
    assert result.resumed_from_step == 6
    for (name, expected), actual in zip(
        uninterrupted.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(expected, actual), name


def test_mixup_with_an_odd_batch_is_refused_naming_the_key():
    images, targets = draw_images(["normal", "utd"] * 4, 0), np.array([0, 1] * 4)
    fold = FoldData(
        task="binary", fold=0, classes=["normal", "anomaly"], ids={"train": [], "val": [], "test": []},
        images={"train": images[:7], "val": images, "test": images},
        targets={"train": targets[:7], "val": targets, "test": targets},
    )  # fmt: skip
    params = tiny_params(finetune={"mixup": 0.8, "batch_size": 16})
    with pytest.raises(ParamsError, match=r"finetune.mixup / finetune.cutmix need an even batch.*got 7"):
        train_classifier(TinyClassifier(), fold, params, params.finetune, lr=1e-3)
