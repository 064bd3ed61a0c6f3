"""The RNG state of a resume file loads with `torch.load(weights_only=True)` and restores every stream."""

from __future__ import annotations

import random

import numpy as np
import torch

from renalmae.train.checkpoint import restore_rng, rng_state


def draws(generator: torch.Generator) -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(), random.random(),
            torch.rand(3, generator=generator).tolist())  # fmt: skip


def test_rng_state_loads_weights_only_and_restores_every_stream(tmp_path):
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    torch.save({"rng": rng_state(generator)}, tmp_path / "latest.pt")
    expected = draws(generator)

    state = torch.load(tmp_path / "latest.pt", map_location="cpu", weights_only=True)
    torch.manual_seed(99), np.random.seed(99), random.seed(99), generator.manual_seed(99)
    restore_rng(state["rng"], generator)

    assert draws(generator) == expected


def test_a_resume_file_with_numpys_old_tuple_state_still_restores(tmp_path):
    generator = torch.Generator().manual_seed(7)
    np.random.seed(2)
    state = rng_state(generator) | {"numpy": np.random.get_state()}  # as resume files were written before
    expected = np.random.rand(3).tolist()
    np.random.seed(99)

    restore_rng(state, generator)

    assert np.random.rand(3).tolist() == expected
