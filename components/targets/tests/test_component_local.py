"""The targets component run by kfp.local: its list output is what dsl.ParallelFor iterates over."""

from components.targets.component import targets


def test_targets_runs_under_kfp_local(kfp_local, params_yaml):
    task = targets(params_yaml=params_yaml)

    assert task.output == [
        {"task_type": "binary", "fold": 0, "repeat": 0},
        {"task_type": "binary", "fold": 1, "repeat": 0},
    ]
