"""The CI workflow that builds the images and submits the pipeline: valid, wired, and secret-safe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "pipeline.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps_of(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def test_runs_on_version_tags(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True

    assert triggers["push"]["tags"] == ["v*"]


def test_images_are_built_with_buildx_per_target_and_tagged_with_the_git_sha(workflow):
    job = workflow["jobs"]["images"]
    build = next(
        step for step in job["steps"] if str(step.get("uses", "")).startswith("docker/build-push-action")
    )

    assert job["strategy"]["matrix"]["target"] == ["cpu", "cuda"]
    assert any(str(step.get("uses", "")).startswith("docker/setup-buildx-action") for step in job["steps"])
    assert build["with"]["target"] == "${{ matrix.target }}" and build["with"]["push"] is True
    assert "${{ github.sha }}-${{ matrix.target }}" in build["with"]["tags"]


def test_submit_installs_from_the_lock_compiles_with_the_sha_tag_and_submits(workflow):
    job = workflow["jobs"]["submit"]
    script = "\n".join(step.get("run", "") for step in job["steps"])

    assert job["needs"] == "images"
    assert "requirements/dev.lock" in script and "--no-deps" in script
    assert 'RENALMAE_IMAGE_TAG="${GITHUB_SHA}"' in script and "python -m pipelines compile" in script
    assert re.search(r"python -m pipelines submit[^\n]*\\\n[^\n]*--host", script)
    assert "--wait" in script


def test_the_kfp_token_reaches_submit_only_through_the_environment(workflow):
    submit = next(step for step in steps_of(workflow, "submit") if "pipelines submit" in step.get("run", ""))

    assert submit["env"]["KF_PIPELINES_TOKEN"] == "${{ secrets.KF_PIPELINES_TOKEN }}"


def test_no_secret_is_interpolated_into_a_shell_command(workflow):
    text = WORKFLOW.read_text()
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]

    assert not re.search(r"echo[^\n]*\$\{\{\s*secrets\.", text)
    assert not [run for run in runs if "secrets." in run or "KF_PIPELINES_TOKEN" in run]
