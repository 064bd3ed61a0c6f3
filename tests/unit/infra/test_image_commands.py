"""The image's commands resolve: its entrypoints and every KFP component's command line.

The fast stand-in for building the image (`make test-containers` builds and runs the real one): an
environment made like the image's, with the package installed from a wheel of the Docker build context
alone (the .dockerignore allow-list) over the locked third-party packages, and no access to the
repository's source tree. What a component or the entrypoint needs from outside that context fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
PIPELINE_YAML = REPO_ROOT / "pipelines" / "renal_pipeline.yaml"
RESOLVER = Path(__file__).with_name("resolve_commands.py")


def build_context(destination: Path) -> Path:
    """Copy what the Docker build sees: the `!path` allow-list of .dockerignore minus its exclusions."""
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    excluded = [rule.removeprefix("**/") for rule in rules if not rule.startswith("!") and rule != "*"]
    for allowed in (rule[1:].rstrip("/") for rule in rules if rule.startswith("!")):
        source, target = REPO_ROOT / allowed, destination / allowed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(*excluded))
        else:
            shutil.copy2(source, target)
    return destination


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def image_env(tmp_path_factory) -> dict[str, str]:
    """Environment variables of a venv holding the wheel of the build context over the locked packages."""
    work = tmp_path_factory.mktemp("image-env")
    context = build_context(work / "context")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", work / "wheels", context])  # fmt: skip
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    (site_packages,) = venv.glob("lib/python*/site-packages")
    # the locked packages of this test environment, appended after the venv's own (where the wheel goes)
    (site_packages / "zz-locked-packages.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    )
    (wheel,) = (work / "wheels").glob("renalmae-*.whl")
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps",
         "--no-index", wheel])  # fmt: skip
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    # the image's /opt/venv/bin holds the locked packages' programs (mlflow) beside renalmae's
    path = os.pathsep.join([str(venv / "bin"), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    return environment | {"PATH": path, "VIRTUAL_ENV": str(venv)}


def test_the_package_comes_from_the_wheel_not_the_source_tree(image_env, tmp_path):
    result = run(["python3", "-c", "import renalmae, renalmae.cli; print(renalmae.__file__)"],
                 env=image_env, cwd=tmp_path)  # fmt: skip

    assert Path(image_env["VIRTUAL_ENV"]) in Path(result.stdout.strip()).parents


def test_the_entrypoint_of_every_target_resolves(image_env, tmp_path):
    commands = [
        json.loads(cmd) for cmd in re.findall(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    ]

    assert {command[0] for command in commands} == {"renalmae", "mlflow"}
    for command in commands:
        assert shutil.which(command[0], path=image_env["PATH"]), command
    # the pipeline image's entrypoint runs (the server's is started for real by tests/integration)
    run(["renalmae", "--help"], env=image_env, cwd=tmp_path)


def test_every_component_command_line_resolves(image_env, tmp_path):
    result = subprocess.run(
        ["python3", str(RESOLVER), str(PIPELINE_YAML)],
        env=image_env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(result.stdout or "{}")

    assert result.returncode == 0 and not any(report.values()), result.stdout + result.stderr[-3000:]
    assert {"exec-ingest", "exec-finetune", "exec-register"} <= set(report)
