"""Fixtures of the models tests: tiny params and a batch of smooth images."""

from __future__ import annotations

import pytest
import torch
from modelkit import IMAGE_SIZE, tiny_params

from renalmae.params import Params


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread on a shared 2-core machine (no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def params() -> Params:
    return tiny_params()


@pytest.fixture
def images() -> torch.Tensor:
    """A batch of smooth model-input images (a few blobs), so a reconstruction loss can fall."""
    generator = torch.Generator().manual_seed(0)
    coords = torch.linspace(-1, 1, IMAGE_SIZE)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.rand(4, 2, generator=generator) - 0.5
    blobs = torch.exp(-((xx - centres[:, :1, None]) ** 2 + (yy - centres[:, 1:, None]) ** 2) / 0.1)
    return (blobs.unsqueeze(1) * 2 - 1).float()
