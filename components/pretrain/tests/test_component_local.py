"""The pretrain component run by kfp.local (CPU, one tiny epoch)."""

from pathlib import Path

import numpy as np
import pytest
from kfp import dsl
from kfp.dsl import Dataset, Model
from safetensors.numpy import load_file

from components.pretrain.component import pretrain
from components.testkit import imported, step_or_skip
from renalmae.testing import tiny_params_yaml


def test_pretrain_runs_under_kfp_local(kfp_local, params_yaml, ingested, splits):
    step_or_skip("pretrain")

    @dsl.pipeline
    def pretrain_only(params_yaml: str) -> Model:
        task = pretrain(
            params_yaml=params_yaml, ingested=imported(Dataset, ingested), splits=imported(Dataset, splits)
        )
        return task.outputs["encoder"]

    run = pretrain_only(params_yaml=params_yaml)

    assert any(Path(run.output.path).iterdir())


# Two torchrun ranks inside a kfp.local subprocess (minutes on 2 shared cores): slow. The default run
# checks the same launch (`launch.run_step` with pretrain.gpus: 2) in tests/unit/train/test_distributed.py.
@pytest.mark.slow
def test_pretrain_gpus_2_runs_two_torchrun_ranks_that_equal_one_process(kfp_local, ingested, splits, encoder):
    """`pretrain.gpus: 2` on the CPU: the component launches the step under torchrun (two gloo ranks, half
    the global batch each); the encoder equals the one-process encoder of the same params otherwise."""
    step_or_skip("pretrain")
    two_ranks = tiny_params_yaml(pretrain={"gpus": 2})

    @dsl.pipeline
    def pretrain_only(params_yaml: str) -> Model:
        task = pretrain(
            params_yaml=params_yaml, ingested=imported(Dataset, ingested), splits=imported(Dataset, splits)
        )
        return task.outputs["encoder"]

    run = pretrain_only(params_yaml=two_ranks)

    expected = load_file(encoder / "encoder.safetensors")
    actual = load_file(Path(run.output.path) / "encoder.safetensors")
    assert expected.keys() == actual.keys()
    for name, values in expected.items():
        np.testing.assert_allclose(actual[name], values, atol=1e-5, err_msg=name)
