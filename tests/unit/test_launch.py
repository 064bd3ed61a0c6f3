"""How the CLI and the KFP components run a step: the argv handed to torchrun means what the CLI parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from renalmae import launch, pipeline
from renalmae.cli import build_parser
from renalmae.run_context import RunContext


@pytest.mark.parametrize("name", pipeline.PIPELINE)
def test_the_command_every_rank_runs_parses_back_to_the_same_arguments(name):
    step = pipeline.step(name)
    arguments = {
        declared.argument: [Path(f"/runs/{p}") for p in declared.producers] if declared.many
        else Path(f"/in/{declared.argument}")
        for declared in step.inputs
    }  # fmt: skip
    target = {"task": "multiclass", "fold": 3, "repeat": 1} if step.fans_out else {}
    argv = launch.cli_argv(step, "/shared/params.yaml", arguments, target, "/out/here")

    parsed = build_parser().parse_args(argv)

    assert parsed.command == name and parsed.params == Path("/shared/params.yaml")
    assert {key: getattr(parsed, key) for key in arguments} == arguments
    assert {key: getattr(parsed, key) for key in target} == target
    assert getattr(parsed, step.output.argument) == Path("/out/here")


def test_one_process_runs_the_step_here_without_torchrun(monkeypatch, tmp_path):
    from renalmae.steps import pretrain

    calls = []
    monkeypatch.setattr(pretrain, "run", lambda params, **kwargs: calls.append(kwargs) or kwargs["out_dir"])
    from renalmae.params import Params

    context = RunContext(engine="dvc", stage="pretrain")
    out = launch.run_step(
        pretrain, Params(), {"ingest_dir": "i", "splits_path": "s"}, {}, tmp_path / "o", context
    )
    assert out == tmp_path / "o" and calls == [
        {"ingest_dir": "i", "splits_path": "s", "out_dir": tmp_path / "o", "context": context}
    ]


def test_the_cli_under_dvc_builds_a_dvc_context_and_a_launcher_hands_its_own_on():
    under_dvc = launch.cli_run_context("finetune", {"DVC_STAGE": "finetune", "RENALMAE_GIT_COMMIT": "abc"})
    assert (under_dvc.engine, under_dvc.stage, under_dvc.git_commit) == ("dvc", "finetune", "abc")
    kfp = RunContext(engine="kfp", pipeline_run_id="run-7", git_commit="abc")
    rank = launch.cli_run_context("pretrain", launch.context_environment(kfp))  # a torchrun rank, a node
    assert (rank.engine, rank.pipeline_run_id, rank.git_commit) == ("kfp", "run-7", "abc")
