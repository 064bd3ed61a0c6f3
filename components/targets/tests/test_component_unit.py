"""The targets component: the training runs come from the params, so the fan-out follows them."""

import yaml

from components.targets.component import targets


def test_targets_are_every_task_times_every_fold_times_every_repeat():
    params_yaml = yaml.safe_dump(
        {
            "split": {"folds": [0, 1, 2]},
            "finetune": {"tasks": ["binary", "multiclass"]},
            "evaluate": {"repeats": 2},
        }
    )

    pairs = targets.python_func(params_yaml=params_yaml)

    assert [(pair["task_type"], pair["fold"], pair["repeat"]) for pair in pairs] == [
        (task, fold, repeat) for task in ("binary", "multiclass") for fold in (0, 1, 2) for repeat in (0, 1)
    ]
