import numpy as np
import pytest
import torch

from renalmae.errors import DataError
from renalmae.train.data import BatchSampler, class_weights


def _epoch(sampler: BatchSampler) -> torch.Tensor:
    return torch.cat([indices for _, indices in sampler.batches()])


def test_class_balanced_sampler_draws_each_class_about_equally():
    targets = np.array([0] * 90 + [1] * 10)
    sampler = BatchSampler(100, 10, seed=0, targets=targets, balance="sampler")
    drawn = []
    for _ in range(20):
        drawn.append(_epoch(sampler).numpy())
        sampler.next_epoch()
    drawn = np.concatenate(drawn)
    share_of_minority = (targets[drawn] == 1).mean()
    assert 0.4 < share_of_minority < 0.6


def test_unbalanced_sampler_visits_every_sample_once_per_epoch():
    sampler = BatchSampler(40, 8, seed=0)
    assert sorted(_epoch(sampler).tolist()) == list(range(40))


def test_sampler_order_depends_on_seed_and_epoch():
    first, same = BatchSampler(40, 8, seed=1), BatchSampler(40, 8, seed=1)
    assert torch.equal(_epoch(first), _epoch(same))
    first.next_epoch()
    assert not torch.equal(_epoch(first), _epoch(BatchSampler(40, 8, seed=1)))
    assert not torch.equal(_epoch(BatchSampler(40, 8, seed=2)), _epoch(BatchSampler(40, 8, seed=1)))


def test_sampler_resumed_from_its_state_yields_the_remaining_batches():
    uninterrupted = [indices for _, indices in BatchSampler(40, 8, seed=0).batches()]
    interrupted = BatchSampler(40, 8, seed=0)
    batches = interrupted.batches()
    next(batches), next(batches)
    resumed = BatchSampler(40, 8, seed=0)
    resumed.load_state_dict(interrupted.state_dict())
    rest = [indices for _, indices in resumed.batches()]
    assert len(rest) == 3
    assert all(torch.equal(a, b) for a, b in zip(rest, uninterrupted[2:], strict=True))


def test_ranks_share_each_global_batch_without_overlap():
    single = [indices for _, indices in BatchSampler(40, 8, seed=0).batches()]
    rank0 = [indices for _, indices in BatchSampler(40, 8, seed=0, rank=0, world_size=2).batches()]
    rank1 = [indices for _, indices in BatchSampler(40, 8, seed=0, rank=1, world_size=2).batches()]
    for whole, first, second in zip(single, rank0, rank1, strict=True):
        assert torch.equal(torch.cat([first, second]), whole)


def test_class_weights_are_inverse_frequency():
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights[1] == pytest.approx(3 * weights[0])


def test_class_weights_refuse_a_class_without_training_images():
    with pytest.raises(DataError, match="no training images"):
        class_weights(np.array([0, 0, 1]), 3)


def test_sampler_refuses_an_empty_training_set():
    with pytest.raises(DataError, match="empty"):
        BatchSampler(0, 8, seed=0)
