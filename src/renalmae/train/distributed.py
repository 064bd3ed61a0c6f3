"""Data-parallel context: one process, or one rank of a `torchrun` job (gloo on CPU, NCCL on CUDA).

`torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; this is the documented way a launcher
talks to the process, so reading them here is the one exception to "no module reads the environment".
Only rank 0 writes files and logs metrics. `torchrun_command` / `run_under_torchrun` start such a job:
every rank runs the same `renalmae` CLI step (`pretrain.gpus` processes in one pod; a Kubeflow Trainer
job on several nodes, see `renalmae.trainjob`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn

from renalmae.errors import ParamsError, RenalMAEError
from renalmae.io import atomic_dir
from renalmae.train.threads import use_cpu_threads


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when available, else the CPU; `cuda` without a GPU is a user error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ParamsError(
                "train.device is `cuda` but no CUDA device is visible; set train.device: cpu or auto"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device_name: str, cpu_threads: int = 0) -> DistContext:
    """Join the `torchrun` process group when launched by it; otherwise a single-process context.

    On the CPU, sets torch's thread count: `cpu_threads`, or with 0 the cores available to this process
    shared by the ranks on this node (`renalmae.train.threads`).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cpu":
        use_cpu_threads(cpu_threads, processes_on_node=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if world_size > 1 and not torch_dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap(model: nn.Module, context: DistContext) -> nn.Module:
    """DistributedDataParallel around `model` under a multi-process job; the model itself otherwise."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def mean_across_ranks(value: torch.Tensor, context: DistContext) -> torch.Tensor:
    if not context.enabled:
        return value
    value = value.detach().clone()
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
    return value / context.world_size


def barrier(context: DistContext) -> None:
    if context.enabled:
        torch_dist.barrier()


@contextlib.contextmanager
def output_dir(final_dir: str | os.PathLike, context: DistContext) -> Iterator[Path]:
    """Rank 0 writes into an atomic staging directory for `final_dir`; other ranks into a discarded one."""
    if context.is_main:
        with atomic_dir(final_dir) as staging:
            yield staging
    else:
        with tempfile.TemporaryDirectory() as scratch:
            yield Path(scratch)


def torchrun_command(cli_argv: list[str], nproc_per_node: int | None = None) -> list[str]:
    """`torchrun ... -m renalmae.cli <cli_argv>`: every rank runs the same CLI step.

    With `nproc_per_node`: one node (`--standalone`: a local rendezvous on a free port). Without: the
    node count, ranks and rendezvous come from the PET_* environment the Kubeflow Trainer runtime sets.
    """
    options = ["--standalone", f"--nproc-per-node={nproc_per_node}"] if nproc_per_node is not None else []
    return ["torchrun", *options, "-m", "renalmae.cli", *cli_argv]


def run_under_torchrun(cli_argv: list[str], nproc_per_node: int, env: dict[str, str] | None = None) -> None:
    """Run `renalmae <cli_argv>` as `nproc_per_node` data-parallel ranks on this machine (environment
    `env`, default this process's); wait for them.

    Uses this interpreter's torch (`python -m torch.distributed.run` is `torchrun`). Raises
    `RenalMAEError` when a rank fails; the rank's own message is printed above it by the CLI.
    """
    launcher, *arguments = torchrun_command(cli_argv, nproc_per_node)
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *arguments], check=False, env=env
    )
    if completed.returncode != 0:
        raise RenalMAEError(
            f"`renalmae {' '.join(cli_argv[:1])}` under {launcher} ({nproc_per_node} processes) exited with "
            f"code {completed.returncode}; the failing rank's error is printed above"
        )
