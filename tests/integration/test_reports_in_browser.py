"""The HTML reports as a reader sees them: headless Chromium (Debian's `chromium`) loads each page.

Each page is served on 127.0.0.1 and loaded at a 1280 px wide screen; the tests assert what a reader would
notice: an image that does not load, a missing value shown as NaN / None, a table without rows or with
blank cells, a title or cell cut off, a page wider than the screen, a line that is only a file name, a
figure with ink at its outer edge (a clipped title). Screenshots are kept in the test's temporary folder,
or in $RENALMAE_SCREENSHOTS when set, for a person to look at.

In the default run (cheap): the validation page of a passing and of a failing data set, and the
comparison page of synthetic prediction runs. Marked slow: the four pages of the pipeline run through the
CLI on a tiny phantom (32 px, one epoch; about a minute of CPU): validation, comparison, explanation and
`renalmae predict --explain`.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from browserkit import Chromium
from comparekit import write_prediction_runs
from PIL import Image
from servicekit import require

from renalmae.cli import main
from renalmae.data.phantom import generate_phantom

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "validation": "reports/validation",
    "comparison": "reports/comparison",
    "explanation": "reports/explain",
    "predict-explain": "reports/predict-explain",
}
TINY = {
    "data": {
        "source": "phantom://renal?n=60&seed=0",
        "pool": ["phantom://renal?n=16&seed=1&unlabelled=true"],
    },
    "validate": {"min_images_per_class": 4},
    "pretrain": {"epochs": 1},
    "finetune": {"epochs": 1},
    "baseline": {"epochs": 1},
    "evaluate": {"bootstrap_resamples": 100},
    # DenseNet's first transition: 128 channels (Score-CAM's masked passes) instead of denseblock4's 1664
    "explain": {"images_per_class": 1, "batch_size": 64, "cnn_layer": "features.transition1"},
    "registry": {"min_auc": 0.0},
}


def _run(*argv: str) -> None:
    assert main([*argv]) == 0, f"renalmae {' '.join(argv)} failed"


def _write_params(path: Path, **sections) -> dict:
    """The e2e params with TINY and `sections` on top."""
    raw = yaml.safe_load((REPO_ROOT / "tests" / "e2e" / "params-e2e.yaml").read_text())
    for section, values in [*TINY.items(), *sections.items()]:
        raw.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return raw


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def report_pages(tmp_path_factory) -> dict[str, Path]:
    """Run the pipeline's steps with the CLI in a fresh folder; the four HTML pages by name."""
    import torch

    work = tmp_path_factory.mktemp("reports")
    raw = _write_params(work / "params.yaml", tracking={"enabled": False})
    _write_params(
        work / "tracked.yaml", tracking={"enabled": True, "tracking_uri": f"sqlite:///{work}/mlflow.db"}
    )
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        torch.set_num_threads(1)
        try:
            for step in ("ingest", "validate", "split", "pretrain"):
                _run(step)
            for task in raw["finetune"]["tasks"]:
                for fold in raw["split"]["folds"]:
                    for step, root in (("finetune", "models/finetune"), ("baseline", "models/baseline")):
                        _run(step, "--task", task, "--fold", str(fold), "--out", f"{root}/{task}/fold{fold}")
            _run("compare")
            _run("explain")
            _run("register", "--params", "tracked.yaml")
            scans = []
            phantom = generate_phantom(
                2, seed=7, image_size=64, difficulty=0.2, class_fractions=(0, 0.5, 0.5)
            )
            for index, pixels in enumerate(phantom.images):
                Image.fromarray(pixels).save(work / f"scan{index}.png")
                scans.append(f"scan{index}.png")
            model = (
                f"models:/{raw['registry']['model_prefix']}-usfmae-{raw['finetune']['tasks'][0]}@challenger"
            )
            _run("predict", "--params", "tracked.yaml", "--model", model, *scans,
                 "--explain", PAGES["predict-explain"])  # fmt: skip
        finally:
            torch.set_num_threads(threads)
    pages = {}
    for name, folder in PAGES.items():
        found = sorted(
            (work / folder).glob("*.html"), key=lambda page: (page.name != "index.html", page.name)
        )
        assert found, f"no HTML page in {folder}"
        pages[name] = found[0]
    return pages


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require(shutil.which("chromium") is not None, "chromium", "chromium")
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("RENALMAE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _inspect(browser: Chromium, page: Path, screenshot: Path) -> dict:
    handler = functools.partial(_QuietHandler, directory=str(page.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return browser.inspect(f"http://127.0.0.1:{server.server_address[1]}/{page.name}", screenshot)
    finally:
        server.shutdown()
        server.server_close()


def _problems(found: dict) -> dict:
    problems = {
        key: found[key]
        for key in ("broken", "missing", "emptyTables", "blankCells", "clipped", "fileNameLines", "edgeInk")
        if found[key]
    }
    if found["pageWidth"] > found["screenWidth"]:
        problems["wider than the screen"] = f"{found['pageWidth']} px > {found['screenWidth']} px"
    if not (found["title"] and found["headings"]):
        problems["no title or headings"] = found["title"]
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAGES))
def test_pipeline_report_page_reads_cleanly_in_a_browser(name, report_pages, browser, screenshots):
    screenshot = screenshots / f"{name}.png"
    problems = _problems(_inspect(browser, report_pages[name], screenshot))

    assert screenshot.stat().st_size > 0 and not problems, f"{name} ({screenshot}): {problems}"


def test_comparison_page_of_synthetic_runs_reads_cleanly_in_a_browser(tmp_path, browser, screenshots):
    write_prediction_runs(tmp_path / "models")
    (tmp_path / "params.yaml").write_text("evaluate:\n  bootstrap_resamples: 100\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        _run(
            "compare", "--runs", "models/finetune", "models/baseline", "--splits", "models/splits.json",
            "--out", PAGES["comparison"],
        )  # fmt: skip
    found = _inspect(
        browser, tmp_path / PAGES["comparison"] / "index.html", screenshots / "comparison-synthetic.png"
    )

    assert found["images"] > 0
    assert not _problems(found), _problems(found)


def test_validation_page_lists_every_rule_with_its_result(tmp_path, browser, screenshots):
    _write_params(tmp_path / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        _run("ingest")
        _run("validate")
    page = tmp_path / PAGES["validation"] / "index.html"
    summary = json.loads(page.with_name("summary.json").read_text())
    found = _inspect(browser, page, screenshots / "validation-passed.png")

    assert summary["success"] and len(summary["rules"]) >= 17
    for rule in summary["rules"]:
        assert rule["rule"] in found["text"] and rule["check"] in found["text"], rule["rule"]
    assert f"{len(summary['rules'])} passed, 0 failed" in found["text"]
    assert "{" not in found["text"], "no raw JSON on the page"
    assert not _problems(found), _problems(found)


def test_failed_validation_page_shows_the_rule_its_fix_and_the_failing_files(tmp_path, browser, screenshots):
    _write_params(tmp_path / "params.yaml", data={"source": "phantom://renal?n=30&seed=0", "pool": []},
                  validate={"min_images_per_class": 12})  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        _run("ingest")
        assert main(["validate"]) != 0
    page = tmp_path / PAGES["validation"] / "index.html"
    summary = json.loads(page.with_name("summary.json").read_text())
    found = _inspect(browser, page, screenshots / "validation-failed.png")

    (failed,) = summary["failed"]
    assert failed["rule"] == "class_min_images" and failed["examples"]
    assert "FAILED" in found["text"] and failed["fix"] in found["text"]
    assert all(example in found["text"] for example in failed["examples"])
    assert f"{len(summary['rules']) - 1} passed, 1 failed" in found["text"]
    assert not _problems(found), _problems(found)
