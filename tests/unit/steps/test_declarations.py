"""The pipeline declaration (`renalmae.pipeline`) against the steps' `run()`: the wrappers derive their
calls from it, so it must say exactly what each step takes."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from renalmae import pipeline
from renalmae.params import Params, params_from_dict

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", pipeline.PIPELINE)
def test_run_takes_exactly_the_declared_arguments(name):
    module = pipeline.load(name)
    step = pipeline.step(name)
    declared = ["params", *(i.argument for i in step.inputs), step.output.argument]
    declared += ["task", "fold", "repeat"] if step.fans_out else []
    declared += ["context"] if step.tracked else []  # the runner's RunContext

    assert module.STEP is step
    assert list(inspect.signature(module.run).parameters) == declared


@pytest.mark.parametrize("name", pipeline.PIPELINE)
def test_declared_params_exist(name):
    raw = Params().to_dict()
    for key in pipeline.step(name).params:
        value = raw
        for part in key.split("."):
            assert part in value, f"{name} declares params `{key}`, which params.yaml does not have"
            value = value[part]


@pytest.mark.parametrize(
    "params_file",
    ["params.yaml", "tests/e2e/params-e2e.yaml", "profiles/gpu.yaml", "profiles/kidney-cpu.yaml",
     "profiles/kidney-external.yaml"],
)  # fmt: skip
def test_every_declared_params_key_is_written_in_the_shipped_params_files(params_file):
    """DVC refuses a stage whose declared key is missing from the params file (defaults do not count)."""
    raw = yaml.safe_load((REPO_ROOT / params_file).read_text())
    for step in pipeline.STEPS.values():
        for key in step.params:
            value = raw
            for part in key.split("."):
                assert isinstance(value, dict) and part in value, f"{params_file} lacks `{key}` ({step.name})"
                value = value[part]


def test_every_artifact_a_step_reads_is_written_by_exactly_one_step_before_it():
    writers = {}
    for step in pipeline.STEPS.values():
        writers.setdefault(step.output.artifact, []).append(step.name)
    for step in pipeline.STEPS.values():
        for declared in step.inputs:
            producers = writers[declared.artifact]
            if declared.many:
                assert set(declared.producers) == set(producers), (step.name, declared)
            else:
                assert len(producers) == 1, (step.name, declared.artifact, producers)
                assert pipeline.PIPELINE.index(producers[0]) < pipeline.PIPELINE.index(step.name)


def test_model_identity_is_the_candidate_name_or_the_baseline_arch():
    params = params_from_dict({"baseline": {"arch": "resnet18"}})
    assert pipeline.model_names(params) == {"candidate": "usfmae", "baseline": "resnet18"}


@pytest.mark.parametrize(
    "key",
    ["data.description", "train.progress", "train.checkpoint_dir", "tracking.enabled", "data.decode_workers"],
)
def test_wording_progress_bars_and_plumbing_do_not_retrain_anything(key):
    for name in ("pretrain", "finetune", "baseline"):
        params = pipeline.step(name).params
        assert key not in params and key.split(".")[0] not in params, (name, key)


def test_training_steps_fan_out_over_tasks_folds_and_repeats():
    params = params_from_dict(
        {"finetune": {"tasks": ["binary"]}, "split": {"folds": [0, 1]}, "evaluate": {"repeats": 2}}
    )
    assert [(t.task, t.fold, t.repeat) for t in pipeline.targets(params)] == [
        ("binary", 0, 0), ("binary", 0, 1), ("binary", 1, 0), ("binary", 1, 1)
    ]  # fmt: skip
    assert pipeline.targets(params, fold=1, repeat=0) == [pipeline.Target("binary", 1, 0)]
    for name in ("finetune", "baseline"):
        assert set(pipeline.TARGET_KEYS) <= set(pipeline.step(name).params)


def test_repeat_zero_stays_where_a_single_run_was_and_repeats_go_beside_it(tmp_path):
    assert pipeline.Target("binary", 2).path(tmp_path) == tmp_path / "binary" / "fold2"
    assert pipeline.Target("binary", 2, 1).path(tmp_path) == tmp_path / "binary" / "fold2-repeat1"


def test_the_declaration_imports_no_step_and_no_heavy_library():
    heavy = ("torch", "mlflow", "great_expectations", "sklearn", "kfp", "renalmae.steps")
    code = (
        "import sys\nfrom renalmae import pipeline, cli, dvc_yaml\ncli.build_parser()\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_an_unknown_step_is_refused_with_the_list_of_steps():
    with pytest.raises(KeyError, match="unknown step 'train'; steps: ingest, validate"):
        pipeline.step("train")
