"""The pod_gpus component, called as a plain function."""

import pytest
import yaml

from components.gpus.component import pod_gpus


@pytest.mark.parametrize(
    ("pretrain", "gpus"),
    [({}, 1), ({"gpus": 4}, 4), ({"gpus": 8, "nodes": 2}, 0)],
    ids=["default", "4", "trainjob"],
)
def test_the_pretrain_pod_asks_for_its_processes_or_none_when_a_trainjob_trains(pretrain, gpus):
    assert pod_gpus.python_func(params_yaml=yaml.safe_dump({"pretrain": pretrain}), step="pretrain") == gpus
