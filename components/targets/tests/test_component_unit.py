"""The targets component: the (task, fold) pairs come from the params, so the fan-out follows them."""

import yaml

from components.targets.component import targets


def test_targets_are_every_task_times_every_fold():
    params_yaml = yaml.safe_dump(
        {"split": {"folds": [0, 1, 2]}, "finetune": {"tasks": ["binary", "multiclass"]}}
    )

    pairs = targets.python_func(params_yaml=params_yaml)

    assert [(pair["task_type"], pair["fold"]) for pair in pairs] == [
        ("binary", 0), ("binary", 1), ("binary", 2), ("multiclass", 0), ("multiclass", 1), ("multiclass", 2),
    ]  # fmt: skip
