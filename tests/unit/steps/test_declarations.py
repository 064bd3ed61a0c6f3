"""Each step's declaration (`STEP`) against its `run()`: the wrappers derive their calls from it."""

from __future__ import annotations

import inspect

import pytest

from renalmae import steps
from renalmae.params import Params


@pytest.mark.parametrize("name", steps.PIPELINE)
def test_run_takes_exactly_the_declared_arguments(name):
    module = steps.load(name)
    step = module.STEP
    declared = ["params", *(i.argument for i in step.inputs)]
    declared += ["task", "fold"] if step.per_target else []
    declared.append(step.output.argument)

    assert step.name == name
    assert list(inspect.signature(module.run).parameters) == declared


@pytest.mark.parametrize("name", steps.PIPELINE)
def test_declared_params_exist(name):
    raw = Params().to_dict()
    for key in steps.load(name).STEP.params:
        value = raw
        for part in key.split("."):
            assert part in value, f"{name} declares params `{key}`, which params.yaml does not have"
            value = value[part]


def test_every_artifact_a_step_reads_is_written_by_exactly_one_step():
    declarations = [steps.load(name).STEP for name in steps.PIPELINE]
    writers = {}
    for step in declarations:
        writers.setdefault(step.output.artifact, []).append(step.name)
    for step in declarations:
        for declared in step.inputs:
            producers = writers[declared.artifact]
            if declared.many:
                assert set(declared.producers) == set(producers), (step.name, declared)
            else:
                assert len(producers) == 1, (step.name, declared.artifact, producers)
                assert steps.PIPELINE.index(producers[0]) < steps.PIPELINE.index(step.name)


def test_model_identity_is_the_candidate_name_or_the_baseline_arch():
    from renalmae.params import params_from_dict

    params = params_from_dict({"baseline": {"arch": "resnet18"}})
    assert steps.load("finetune").STEP.model.name_for(params) == "usfmae"
    assert steps.load("baseline").STEP.model.name_for(params) == "resnet18"
    assert {steps.load(n).STEP.model.role for n in ("finetune", "baseline")} == {"candidate", "baseline"}


@pytest.mark.parametrize("name", steps.PIPELINE)
def test_the_declaration_read_from_source_is_the_modules_step(name):
    assert steps.declaration(name) == steps.load(name).STEP


def test_a_declaration_is_read_without_importing_the_step_modules():
    import subprocess
    import sys

    heavy = ("torch", "mlflow", "great_expectations", "sklearn", "renalmae.steps.pretrain")
    code = (
        "import sys\nfrom renalmae import steps\n"
        "[steps.declaration(name) for name in steps.PIPELINE]\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_an_unknown_step_is_refused_with_the_list_of_steps():
    with pytest.raises(KeyError, match="unknown step 'train'; steps: ingest, validate"):
        steps.declaration("train")
