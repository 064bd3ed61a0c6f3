"""torch's CPU threads come from the cores this process may use, and the choice is logged."""

import logging
import os

import joblib
import pytest
import torch

from renalmae.cli import main
from renalmae.train.distributed import setup
from renalmae.train.threads import available_cores, choose_cpu_threads, use_cpu_threads

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")


@pytest.fixture
def one_cpu_affinity():
    """This process pinned to its first allowed CPU for the test."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    yield
    os.sched_setaffinity(0, allowed)


@needs_affinity
def test_zero_threads_follow_the_affinity_mask(one_cpu_affinity):
    assert available_cores() == 1
    assert use_cpu_threads(0) == 1
    assert torch.get_num_threads() == 1


@needs_affinity
def test_available_cores_never_exceed_the_affinity_mask():
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0)) <= os.cpu_count()


def test_a_cpu_cap_in_the_environment_of_joblib_lowers_the_choice(monkeypatch):
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    assert choose_cpu_threads(0)[0] == 1


def test_explicit_threads_are_used_as_given():
    threads, why = choose_cpu_threads(3)
    assert threads == 3
    assert "train.cpu_threads: 3" in why


@pytest.mark.parametrize(("cores", "ranks", "expected"), [(8, 2, 4), (2, 2, 1), (2, 3, 1), (5, 2, 2)])
def test_ranks_on_one_node_share_the_available_cores(monkeypatch, cores, ranks, expected):
    monkeypatch.setattr(joblib, "cpu_count", lambda: cores)
    assert choose_cpu_threads(0, processes_on_node=ranks)[0] == expected


def test_setup_on_the_cpu_sets_and_logs_the_threads(caplog, monkeypatch):
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    torch.set_num_threads(2)
    with caplog.at_level(logging.INFO, logger="renalmae"):
        setup("cpu", cpu_threads=0)
    assert torch.get_num_threads() == 1
    assert "torch CPU threads: 1 (train.cpu_threads: 0 = the 1 cores available" in caplog.text


def test_the_cli_prints_the_library_log_on_stderr(tmp_path, capsys):
    """`renalmae` configures the `renalmae` logger, so the threads line reaches the user's terminal."""
    assert main(["ingest", "--params", str(tmp_path / "absent.yaml")]) != 0
    logging.getLogger("renalmae.train.threads").info("torch CPU threads: 1 (test)")
    assert "renalmae.train.threads: torch CPU threads: 1 (test)" in capsys.readouterr().err
