"""Fixtures for the component tests: a tiny params text, kfp.local set up once, and step outputs built once.

The upstream outputs a component needs (ingested data, splits, an encoder, trained fold models) are
made by calling the step functions directly, once per session, in a session temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.testkit import step_or_skip, synthetic_runs
from renalmae.pipeline import Target
from renalmae.testing import tiny_params_yaml


@pytest.fixture(scope="session")
def params_yaml() -> str:
    """Text of a tiny params file (phantom n=60 at 32 px, 2 folds, binary task, 1 epoch, no tracking)."""
    return tiny_params_yaml()


@pytest.fixture(scope="session")
def params(params_yaml):
    from renalmae.params import params_from_dict

    return params_from_dict(yaml.safe_load(params_yaml))


@pytest.fixture(scope="session")
def kfp_local(tmp_path_factory) -> Path:
    """kfp.local, initialised once: components run as subprocesses of this Python (no venv, no image)."""
    from kfp import local

    pipeline_root = tmp_path_factory.mktemp("kfp-local-root")
    local.init(local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    return pipeline_root


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("steps")


@pytest.fixture(scope="session")
def ingested(params, work) -> Path:
    return _once(work / "ingested", lambda out: step_or_skip("ingest").run(params, out_dir=out))


@pytest.fixture(scope="session")
def validation(params, work, ingested) -> Path:
    return _once(
        work / "validation",
        lambda out: step_or_skip("validate").run(params, ingest_dir=ingested, report_dir=out),
    )


@pytest.fixture(scope="session")
def splits(params, work, ingested, validation) -> Path:
    return _once(
        work / "splits.json",
        lambda out: step_or_skip("split").run(
            params, ingest_dir=ingested, validation_dir=validation, out_path=out
        ),
    )


@pytest.fixture(scope="session")
def encoder(params, work, ingested, splits) -> Path:
    return _once(
        work / "encoder",
        lambda out: step_or_skip("pretrain").run(
            params, ingest_dir=ingested, splits_path=splits, out_dir=out
        ),
    )


@pytest.fixture(scope="session")
def trained_runs(params, work, ingested, splits, encoder) -> dict[str, list[Path]]:
    """Fine-tuned ViT and baseline runs for every fold of the binary task (each step trains them all)."""
    finetune, baseline = step_or_skip("finetune"), step_or_skip("baseline")
    _once(work / "finetune", lambda out: finetune.run(params, ingested, splits, encoder, out, task="binary"))
    _once(work / "baseline", lambda out: baseline.run(params, ingested, splits, out, task="binary"))
    return {
        f"{step}_runs": [Target("binary", fold).path(work / step) for fold in params.split.folds]
        for step in ("finetune", "baseline")
    }


@pytest.fixture(scope="session")
def predicted_runs(params, work) -> dict[str, list[Path]]:
    """Run folders with seeded predictions for every fold (no training): enough for `compare`."""
    return synthetic_runs(work / "predicted", params.split.folds)


@pytest.fixture(scope="session")
def comparison(params, work, splits, trained_runs) -> Path:
    run_dirs = trained_runs["finetune_runs"] + trained_runs["baseline_runs"]
    return _once(
        work / "comparison",
        lambda out: step_or_skip("compare").run(params, run_dirs=run_dirs, splits_path=splits, out_dir=out),
    )


def _once(path: Path, make) -> Path:
    if not path.exists():
        make(path)
    return path
