"""The validate component, called as a plain function: a passing data set yields a report; a bad one stops."""

import shutil

import numpy as np
import pytest
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

    validate.python_func(params_yaml=params_yaml, ingested=artifact(Dataset, ingested), **outputs)

    assert any((tmp_path / "validation").iterdir())


def test_validate_fails_on_blank_images(params_yaml, ingested, tmp_path):
    step_or_skip("validate")
    from renalmae.errors import DataError

    broken = tmp_path / "broken"
    shutil.copytree(ingested, broken)
    images = np.load(broken / "images.npy")
    np.save(broken / "images.npy", np.zeros_like(images))

    with pytest.raises(DataError):
        validate.python_func(
            params_yaml=params_yaml, ingested=artifact(Dataset, broken), **_outputs(tmp_path)
        )
