"""Serving-time explanations map the fold ensemble that served the prediction, with the same probability."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from registrykit import make_run_dirs, sample_images

from renalmae.explain.ensemble import MeanProbabilityEnsemble
from renalmae.explain.figures import LABEL_BAND_PX
from renalmae.explain.images import explain_images
from renalmae.params import ExplainParams
from renalmae.registry.pyfunc import FoldEnsemble, bundle_ensemble, read_image

SETTINGS = ExplainParams(images_per_class=1, batch_size=64)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> FoldEnsemble:
    root = tmp_path_factory.mktemp("ensemble")
    run_dirs = make_run_dirs(root / "runs", "usfmae", "binary", folds=3)
    bundle_ensemble(run_dirs, "normal", root / "bundle")
    return FoldEnsemble(root / "bundle")


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("scans")
    paths = []
    for index, pixels in enumerate(sample_images(n=2, size=40)):
        paths.append(folder / f"scan{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_the_ensemble_network_gives_the_mean_of_its_members_probabilities(ensemble):
    images = torch.randn(4, 1, 32, 32)
    network = MeanProbabilityEnsemble(ensemble.models).eval()
    with torch.no_grad():
        expected = torch.stack([member(images).softmax(-1) for member in ensemble.models]).mean(0)
        np.testing.assert_allclose(network(images).softmax(-1).numpy(), expected.numpy(), atol=1e-6)


def test_the_page_shows_the_served_probability_and_weighs_every_fold_models_channels(
    ensemble, scans, tmp_path
):
    out_dir = explain_images(ensemble, scans, tmp_path / "cams", settings=SETTINGS)
    record = json.loads((out_dir / "explanations.json").read_text())
    served = ensemble.predict_proba([read_image(path) for path in scans])
    assert record["fold_models"] == 3
    assert [entry["predicted"] for entry in record["images"]] == [
        ensemble.classes[i] for i in served.argmax(1)
    ]
    np.testing.assert_allclose([entry["probability"] for entry in record["images"]], served.max(1), atol=1e-6)
    assert record["channels"] == record["layer_channels"] == 3 * 32  # three members' 32-wide token layers
    page = (out_dir / "index.html").read_text()
    assert "3 fold models" in page and "<h2>Predictions</h2>" in page
    for path, probability in zip(scans, served.max(1), strict=True):
        assert f"<td>{path.name}</td>" in page and f"<td>{probability:.3f}</td>" in page


def test_each_overlay_panel_is_labelled(ensemble, scans, tmp_path):
    out_dir = explain_images(ensemble, scans[:1], tmp_path / "cams", settings=SETTINGS)
    overlay = np.asarray(Image.open(next(out_dir.glob("*.png"))).convert("L"))
    band = overlay[:LABEL_BAND_PX]
    panel = (overlay.shape[1] + 4) // 4  # four panels and their gaps
    for index in range(4):  # dark label text above each of image | Score-CAM | overlay | mask
        assert (band[:, index * panel : (index + 1) * panel - 4] < 128).any(), index
