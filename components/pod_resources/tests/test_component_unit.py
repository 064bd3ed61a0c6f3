"""The pod_resources component, called as a plain function."""

import pytest
import yaml

from components.pod_resources.component import pod_resources
from renalmae.kfp_io import CPU_POD, GPU_POD


@pytest.mark.parametrize(
    ("pretrain", "expected"),
    [
        ({}, (1, GPU_POD["cpu"], GPU_POD["memory"])),
        ({"gpus": 4}, (4, GPU_POD["cpu"], GPU_POD["memory"])),
        ({"gpus": 8, "nodes": 2}, (0, CPU_POD["cpu"], CPU_POD["memory"])),
    ],
    ids=["default", "4", "trainjob"],
)
def test_the_pretrain_pod_asks_for_its_processes_or_a_light_pod_when_a_trainjob_trains(pretrain, expected):
    params_yaml = yaml.safe_dump({"pretrain": pretrain})
    assert tuple(pod_resources.python_func(params_yaml=params_yaml, step="pretrain")) == expected
