"""Shared test configuration: paths to the repository and to the optional real data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (real ultrasound); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real ultrasound data not found at {SHARED_DATA} (see the README's Data section)")
    return SHARED_DATA


# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`). A group of tests runs
# whole on one worker, so a session fixture is built once per group that uses it: the component tests share
# their trained fold models, the e2e tests their pipeline run, the integration tests their services, each
# unit package its conftest's data; other tests group by file. (xdist 3.8 groups by `xdist_group` marks
# through test ids, which pytest 9 no longer lets it change: the groups are drawn here, by path.) The groups
# that take longest are handed out first, so that none starts late while the other worker sits idle.
LONGEST_GROUPS_FIRST = (
    "tests/e2e",
    "components",
    "tests/integration",
    "tests/unit/train",
    "tests/unit/explain",
    "tests/unit/infra",
    "tests/unit/pipelines",
    "tests/unit/models",
    "tests/unit/registry",
    "tests/unit/evaluate",
    "tests/unit/steps",
    "tests/unit/data",
)


def suite_group(path: str) -> str:
    """The group of a test file (relative to the repository): components/, tests/e2e/,
    tests/integration/ and each tests/unit/<package>/ are one group each; any other file is its own."""
    parts = Path(path).parts
    if parts[0] == "components":
        return "components"
    if parts[0] == "tests" and len(parts) > 2 and parts[1] in ("e2e", "integration"):
        return "/".join(parts[:2])
    if parts[:2] == ("tests", "unit") and len(parts) > 3:
        return "/".join(parts[:3])
    return "/".join(parts)


def group_rank(path: str) -> int:
    group = suite_group(path)
    last = len(LONGEST_GROUPS_FIRST)
    return LONGEST_GROUPS_FIRST.index(group) if group in LONGEST_GROUPS_FIRST else last


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown where xdist is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup`: whole groups (suite_group) to a worker, in the order the workers collected them."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return suite_group(nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False  # keep the longest-first order of pytest_collection_modifyitems
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: longest groups first (stable within a group)
        items.sort(key=lambda item: group_rank(item.nodeid.split("::", 1)[0]))
