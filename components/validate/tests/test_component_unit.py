"""The validate component, called as a plain function: its status says passed or failed, and the report is
kept either way (KFP uploads nothing of a failed task)."""

import shutil

import numpy as np
from kfp.dsl import HTML, Dataset, Metrics

from components.testkit import artifact, step_or_skip
from components.validate.component import validate


def _outputs(tmp_path):
    return {
        "validation": artifact(Dataset, tmp_path / "validation"),
        "report": artifact(HTML, tmp_path / "report.html"),
        "metrics": artifact(Metrics, tmp_path / "metrics"),
    }


def test_validate_writes_its_report_into_the_dataset(params_yaml, ingested, tmp_path):
    step_or_skip("validate")
    outputs = _outputs(tmp_path)

    status = validate.python_func(params_yaml=params_yaml, ingested=artifact(Dataset, ingested), **outputs)

    assert status == "passed" and any((tmp_path / "validation").iterdir())


def test_blank_images_fail_validation_and_keep_the_report_that_says_why(
    params_yaml, ingested, tmp_path, capsys
):
    step_or_skip("validate")
    broken = tmp_path / "broken"
    shutil.copytree(ingested, broken)
    images = np.load(broken / "images.npy")
    np.save(broken / "images.npy", np.zeros_like(images))

    outputs = _outputs(tmp_path)

    status = validate.python_func(params_yaml=params_yaml, ingested=artifact(Dataset, broken), **outputs)

    assert status == "failed"
    assert "data validation failed" in capsys.readouterr().err
    assert "pixel" in (tmp_path / "report.html").read_text().lower()  # the page that says what failed
    assert outputs["metrics"].metadata, "the summary's numbers are logged"
