"""Torch's CPU thread count, chosen from the cores this process may actually use.

torch's own default is the machine's core count, which ignores a container's CPU quota: a pod limited to
2 CPUs on a 64-core node runs 64 threads that spin on each other (on a shared 2-core machine the MAE step
of the kidney profile went from 0.4–1 s to 4–5 s). `train.cpu_threads: 0` therefore means "the cores
available to this process": the fewest of the CPU count, the process's affinity mask
(`os.sched_getaffinity`) and its cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`),
as `joblib.cpu_count` reads them (loky; the quota of the cgroup mounted at /sys/fs/cgroup, i.e. the
container's own; `LOKY_MAX_CPU_COUNT` caps it further). Data-parallel ranks on one node share those cores.
Every step that runs torch on the CPU calls `use_cpu_threads` once and the choice is logged.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def available_cores() -> int:
    """CPU cores this process may use: min(CPU count, affinity mask, cgroup CPU quota rounded up), ≥ 1."""
    import joblib

    return joblib.cpu_count()


def _affinity() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def choose_cpu_threads(requested: int, processes_on_node: int = 1) -> tuple[int, str]:
    """(threads, why): `requested` when > 0, else the available cores shared by `processes_on_node` ranks."""
    if requested > 0:
        return requested, f"train.cpu_threads: {requested} ({available_cores()} cores available)"
    cores = available_cores()
    threads = max(1, cores // processes_on_node)
    sources = f"{os.cpu_count()} CPUs, affinity mask {_affinity()}, cgroup CPU quota via joblib.cpu_count"
    shared = f" shared by {processes_on_node} ranks on this node" if processes_on_node > 1 else ""
    return threads, f"train.cpu_threads: 0 = the {cores} cores available to this process{shared} ({sources})"


def use_cpu_threads(requested: int, processes_on_node: int = 1) -> int:
    """Set torch's intra-op thread count (see the module docstring) and log the choice; return it."""
    threads, why = choose_cpu_threads(requested, processes_on_node)
    # Said once per process (a training step trains every task and fold in one), then only when it changes.
    level = logging.DEBUG if torch.get_num_threads() == threads and _SAID else logging.INFO
    torch.set_num_threads(threads)
    _SAID.add(threads)
    log.log(level, "torch CPU threads: %d (%s)", threads, why)
    return threads


_SAID: set[int] = set()
