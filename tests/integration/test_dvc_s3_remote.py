"""DVC data versions on the same S3 endpoint: push, lose the cache and the data, pull back identical files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from servicekit import DVC_BUCKET, s3_client, service_env

pytestmark = pytest.mark.integration

DVC = str(Path(sys.executable).parent / "dvc")


def _run(*command: str, cwd: Path) -> None:
    env = service_env(DVC_NO_ANALYTICS="1", DVC_IGNORE_ISATTY="1")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_dvc_push_then_pull_restores_identical_files(services, tmp_path):
    repo = tmp_path / "repo"
    data = repo / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(data / "images" / "images.npy", rng.integers(0, 256, size=(8, 32, 32), dtype=np.uint8))
    (data / "table.csv").write_text("id,label\na,normal\nb,utd\n")
    before = _digests(data)

    _run("git", "init", "-q", cwd=repo)
    _run(DVC, "init", "-q", cwd=repo)
    _run(DVC, "add", "-q", "data", cwd=repo)
    _run(DVC, "remote", "add", "-d", "store", f"s3://{DVC_BUCKET}/dvc", cwd=repo)
    _run(DVC, "remote", "modify", "store", "endpointurl", services.s3_url, cwd=repo)
    _run(DVC, "push", "-q", cwd=repo)

    objects = s3_client(services.s3_url).list_objects_v2(Bucket=DVC_BUCKET, Prefix="dvc/")
    assert objects.get("KeyCount", 0) >= len(before)

    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")
    _run(DVC, "pull", "-q", cwd=repo)
    assert _digests(data) == before
