"""`python -m pipelines submit` against a fake KFP API on 127.0.0.1 (fake_kfp.py: not a real KFP backend)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipelines.__main__ import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_kfp import FakeKFP, FakeKFPServer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPILED = REPO_ROOT / "pipelines" / "renal_pipeline.yaml"
TOKEN = "s3cr3t-token-value"


@pytest.fixture
def params_file(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"split": {"folds": [0, 1]}, "finetune": {"tasks": ["binary"]}}))
    return path


@pytest.fixture
def kfp_server(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp/context.json from the developer's machine
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    with FakeKFPServer(FakeKFP(token=TOKEN)) as server:
        yield server


def submit(server, params_file, *extra: str) -> int:
    return main(
        [
            "submit", "--host", server.url, "--experiment", "renal-ci", "--version", "abc1234",
            "--params", str(params_file), "--package", str(COMPILED), *extra,
        ]
    )  # fmt: skip


def test_submit_creates_pipeline_version_experiment_and_run(kfp_server, params_file, capsys):
    assert submit(kfp_server, params_file) == 0

    state = kfp_server.state
    assert [p["display_name"] for p in state.pipelines.values()] == ["renalmae"]
    assert [v["display_name"] for v in state.versions.values()] == ["abc1234"]
    assert [e["display_name"] for e in state.experiments.values()] == ["renal-ci"]
    (run,) = state.runs.values()
    assert run["pipeline_version_reference"]["pipeline_version_id"] in state.versions
    assert yaml.safe_load(run["runtime_config"]["parameters"]["params_yaml"]) == yaml.safe_load(
        params_file.read_text()
    )
    assert state.uploads[-1] == COMPILED.read_bytes()
    printed = capsys.readouterr().out
    assert f"run {run['run_id']}: {kfp_server.url}/#/runs/details/{run['run_id']}" in printed
    assert TOKEN not in printed


def test_every_request_carries_the_bearer_token(kfp_server, params_file):
    submit(kfp_server, params_file)

    assert kfp_server.state.requests
    assert {r.headers.get("authorization") for r in kfp_server.state.requests} == {f"Bearer {TOKEN}"}


def test_a_second_submit_adds_a_version_to_the_existing_pipeline(kfp_server, params_file):
    submit(kfp_server, params_file)
    submit(kfp_server, params_file)

    state = kfp_server.state
    assert len(state.pipelines) == 1 and len(state.experiments) == 1
    assert len(state.versions) == 2 and len(state.runs) == 2
    assert len(state.calls("POST", "/pipelines/upload")) == 1


def test_wait_exits_zero_when_the_run_succeeds(kfp_server, params_file, capsys):
    assert submit(kfp_server, params_file, "--wait", "--timeout", "30") == 0
    assert "(SUCCEEDED)" in capsys.readouterr().out


def test_wait_exits_non_zero_when_the_run_fails(kfp_server, params_file, capsys):
    kfp_server.state.final_state = "FAILED"

    assert submit(kfp_server, params_file, "--wait", "--timeout", "30") != 0
    assert "ended FAILED" in capsys.readouterr().err


def test_a_wrong_token_is_refused_with_a_hint_and_not_printed(kfp_server, params_file, monkeypatch, capsys):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "wrong-token")
    monkeypatch.setattr(
        "kfp.client.client.time.sleep", lambda seconds: None
    )  # skip the client's retry pauses

    assert submit(kfp_server, params_file) != 0
    err = capsys.readouterr().err
    assert "KF_PIPELINES_TOKEN" in err
    assert "wrong-token" not in err and TOKEN not in err


def test_an_unreachable_host_is_a_clear_error(params_file, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    with FakeKFPServer(FakeKFP()) as server:
        url = server.url  # the port is closed once the server is gone

    assert main(["submit", "--host", url, "--experiment", "e", "--version", "v",
                 "--params", str(params_file), "--package", str(COMPILED)]) != 0  # fmt: skip
    assert "unreachable" in capsys.readouterr().err


def test_an_invalid_params_file_is_refused_before_contacting_the_server(kfp_server, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("split:\n  fols: [0, 1]\n")

    assert submit(kfp_server, bad) != 0
    assert "split.fols" in capsys.readouterr().err
    assert kfp_server.state.requests == []


def test_pipeline_run_without_local_points_to_submit(params_file, capsys):
    assert main(["run", "--params", str(params_file)]) != 0
    assert "python -m pipelines submit" in capsys.readouterr().err
