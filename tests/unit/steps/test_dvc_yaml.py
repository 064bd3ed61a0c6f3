"""dvc.yaml is written from the pipeline declaration (`renalmae dvc-yaml`), and its code deps are as narrow
as the code: a change to a module puts out of date the stages that import it, and no others."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from renalmae import pipeline
from renalmae.dvc_yaml import PACKAGE_DIR, dvc_yaml_text, import_closure
from renalmae.params import load_params

REPO_ROOT = Path(__file__).resolve().parents[3]
DVC = str(Path(sys.executable).with_name("dvc"))


def test_committed_dvc_yaml_is_what_renalmae_dvc_yaml_writes():
    expected = dvc_yaml_text(load_params(REPO_ROOT / "params.yaml"), REPO_ROOT)
    assert (REPO_ROOT / "dvc.yaml").read_text() == expected, "dvc.yaml is stale: run `renalmae dvc-yaml`"


def test_every_step_is_one_stage_that_runs_it_on_its_declared_paths():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(pipeline.PIPELINE)
    from renalmae.cli import build_parser

    for name, stage in stages.items():
        args = build_parser().parse_args(stage["cmd"].split()[1:])
        step = pipeline.step(name)
        assert getattr(args, step.output.argument) == Path(step.output.artifact.path_for(name))
        assert all(getattr(args, key, None) is None for key in ("task", "fold", "repeat"))  # every target


def test_closure_follows_function_level_and_submodule_imports():
    closure = {str(path.relative_to(PACKAGE_DIR)) for path in import_closure("renalmae.steps.finetune")}

    assert "train/checkpoint.py" in closure  # `from renalmae.train import checkpoint as ckpt`
    assert "data/cache.py" in closure  # through renalmae.train.classifier
    assert "cli.py" not in closure and "steps/compare.py" not in closure


@pytest.fixture(scope="module")
def locked_copy(tmp_path_factory) -> Path:
    """A git + DVC copy of the project whose every stage is locked as done (placeholder outputs, `dvc
    commit`), so `dvc status` lists exactly the stages a source edit puts out of date."""
    repo = tmp_path_factory.mktemp("locked")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, repo / name)
    shutil.copytree(PACKAGE_DIR, repo / "src" / "renalmae", ignore=shutil.ignore_patterns("__pycache__"))
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        for out in stage["outs"] + stage.get("metrics", []):
            path = repo / out
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(out)
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "placeholder").write_text(out)
    for command in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "commit", "-f", "-q"]):
        subprocess.run(command, cwd=repo, check=True, capture_output=True, timeout=300)
    return repo


def out_of_date_after_editing(repo: Path, module: str) -> set[str]:
    path = repo / "src" / "renalmae" / module
    original = path.read_text()
    path.write_text(original + "\n# edited\n")
    try:
        result = subprocess.run([DVC, "status", "--json"], cwd=repo, check=True, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
    finally:
        path.write_text(original)
    return set(yaml.safe_load(result.stdout) or {})


@pytest.mark.parametrize(
    "module, first",
    [("stats/delong.py", "compare"), ("data/decode/__init__.py", "ingest"), ("models/mae.py", "pretrain")],
)
def test_editing_a_module_puts_out_of_date_only_its_first_stage_and_what_follows(locked_copy, module, first):
    stale = out_of_date_after_editing(locked_copy, module)

    assert first in stale
    assert stale <= set(pipeline.PIPELINE[pipeline.PIPELINE.index(first) :]), stale
