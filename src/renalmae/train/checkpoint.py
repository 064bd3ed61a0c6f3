"""Training checkpoints for exact resume: weights, optimiser, schedule, every RNG, sampler and early stopping.

A checkpoint lives outside the step's output directory (which is replaced atomically at the end):
`<out_dir parent>/.checkpoints/<out_dir name>/`, or `<train.checkpoint_dir>/<run name>/` when set (a
mounted volume on Kubeflow). It carries a fingerprint of the parameters that shape the run; a
checkpoint with another fingerprint is ignored, and the log says so. It is deleted after success.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from renalmae.io import checkpoint_dir, remove_checkpoints  # noqa: F401 - where checkpoints live
from renalmae.params import Params

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "latest.pt"


def fingerprint(params: Params, sections: Iterable[str], **identity: Any) -> str:
    """sha256 of the named params sections or dotted keys (a step's declared `params`) plus the run's
    identity (task, fold, inputs, ...)."""
    raw = params.to_dict()
    payload = {"sections": {name: _value_at(raw, name) for name in sections}, "identity": identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _value_at(raw: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        raw = raw[key]
    return raw


def rng_state(augment_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG's state as tensors, ints, floats and tuples only, so that a resume file loads with
    `torch.load(..., weights_only=True)` (numpy's state array becomes an int64 tensor)."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
        "augment": augment_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], augment_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        key = numpy_state["key"].numpy().astype(np.uint32)
        numpy_state = (numpy_state["bit_generator"], key, numpy_state["pos"], numpy_state["has_gauss"],
                       numpy_state["gauss"])  # fmt: skip
    np.random.set_state(numpy_state)  # a tuple: a resume file written before the state was tensors
    random.setstate(state["python"])
    augment_generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def weights_only_globals() -> list[Any]:
    """What `torch.load(weights_only=True)` may rebuild besides tensors and plain Python values, for
    `torch.serialization.safe_globals`: `argparse.Namespace` (the args MAE training scripts save), numpy
    scalars, arrays and dtypes (saved args, numpy's RNG state). None of them runs code when unpickled; the
    numpy functions are listed under their numpy 1 names too (`numpy.core`), as older files spell them.
    """
    import argparse

    multiarray = np._core.multiarray
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    return [
        argparse.Namespace,
        np.dtype,
        np.ndarray,
        multiarray.scalar,
        multiarray._reconstruct,
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        *sorted(dtype_classes, key=lambda cls: cls.__name__),
    ]


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write `state` to `<directory>/latest.pt` atomically (temporary file, then `os.replace`)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE}.tmp-", dir=directory)
    os.close(fd)
    try:
        torch.save(state, staging)
        os.replace(staging, directory / CHECKPOINT_FILE)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return directory / CHECKPOINT_FILE


def load_checkpoint(directory: Path | None, expected_fingerprint: str) -> dict[str, Any] | None:
    """The latest checkpoint of this run, or None (none there, or written by a run with other params)."""
    if directory is None or not (directory / CHECKPOINT_FILE).is_file():
        return None
    path = directory / CHECKPOINT_FILE
    # numpy's RNG state is rebuilt from numpy arrays and dtypes: allowed, and nothing that runs code
    with torch.serialization.safe_globals(weights_only_globals()):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        log.warning(
            "checkpoint %s was written by a run with other parameters (fingerprint %s, this run %s); "
            "not resuming from it, training from the start",
            path,
            str(state.get("fingerprint"))[:12],
            expected_fingerprint[:12],
        )
        return None
    log.info("resuming from %s (step %d, epoch %d)", path, state["step"], state["sampler"]["epoch"])
    return state
