"""`renalmae predict` on what users send: files of any size, mode and format in one call, each prepared
exactly as ingest prepares images; and, without a champion, an error that says how to make one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from registrykit import make_run_dirs, register_bundle

from renalmae.data.decode import Preparation, prepare_image_file
from renalmae.errors import DataError, ModelError
from renalmae.registry.pyfunc import FoldEnsemble, bundle_ensemble
from renalmae.registry.serving import predict_files


def user_files(directory: Path) -> list[Path]:
    """Images as users send them: different sizes, a colour JPEG with EXIF rotation, 16-bit, DICOM."""
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(0)
    directory.mkdir()
    square = directory / "square.png"
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(square)
    wide = directory / "wide_rgb.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (30, 64, 3), dtype=np.uint8)).save(wide, exif=exif)
    deep = directory / "deep.png"
    Image.fromarray(rng.integers(0, 65535, (70, 50), dtype=np.uint16)).save(deep)
    dicom = directory / "scan.dcm"
    dicom.write_bytes(Path(get_testdata_file("MR_small_RLE.dcm", download=False)).read_bytes())
    return [square, wide, deep, dicom]


def register_champion(store_uri: str, tmp_path: Path, name: str, champion: bool = True) -> Path:
    """A two-fold ensemble registered as version 1 of `name` (promoted when asked); its bundle."""
    from renalmae.params import RegistryParams
    from renalmae.registry.promote import promote

    bundle, version = register_bundle(store_uri, tmp_path, name)
    if champion:
        promote(store_uri, name, version.version, RegistryParams())
    return bundle


def test_predict_takes_images_of_different_sizes_and_modes_in_one_call(store_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the embedded store keeps its artifacts in ./mlruns
    bundle = register_champion(store_uri, tmp_path, "renal-predict-sizes")
    files = user_files(tmp_path / "inbox")
    table = predict_files("models:/renal-predict-sizes@champion", store_uri, files)
    assert table["image"].tolist() == [str(path) for path in files]
    prepared = np.stack([prepare_image_file(path, Preparation(size=32)) for path in files])
    expected = FoldEnsemble(bundle).predict_proba(prepared)
    np.testing.assert_allclose(table[["prob_normal", "prob_anomaly"]].to_numpy(), expected, atol=1e-6)


def test_predict_without_a_champion_says_how_to_make_one(store_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    register_champion(store_uri, tmp_path, "renal-not-promoted", champion=False)
    image = user_files(tmp_path / "inbox")[0]
    with pytest.raises(ModelError) as error:
        predict_files("models:/renal-not-promoted@champion", store_uri, [image])
    assert "no version of renal-not-promoted has the alias 'champion'" in str(error.value)
    assert "renalmae promote --model renal-not-promoted" in str(error.value)


def test_predict_with_a_model_never_registered_says_how_to_register_one(store_uri, tmp_path):
    image = user_files(tmp_path / "inbox")[0]
    with pytest.raises(ModelError) as error:
        predict_files("models:/renal-never-registered@champion", store_uri, [image])
    assert "renal-never-registered" in str(error.value) and "renalmae register" in str(error.value)


def test_a_model_trained_on_cropped_images_crops_what_it_is_sent(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
    from ingestkit import screen_frame, tiny_params, write_manifest

    from renalmae.data.cache import load_ingested
    from renalmae.steps import ingest
    from renalmae.train.predict import predict_probabilities

    run_dirs = make_run_dirs(tmp_path / "runs", "usfmae", "binary", folds=2)
    for run_dir in run_dirs:  # as `finetune` records it under data.crop: auto
        record = json.loads((run_dir / "run.json").read_text())
        (run_dir / "run.json").write_text(json.dumps({**record, "crop": "auto"}))
    bundle_ensemble(run_dirs, "normal", tmp_path / "bundle")
    ensemble = FoldEnsemble(tmp_path / "bundle")
    Image.fromarray(screen_frame(2)[0]).save(tmp_path / "screen.png")
    manifest = write_manifest(tmp_path / "manifest.csv", [{"image": "screen.png", "label": "utd"}])
    params = tiny_params(manifest, data={"crop": "auto"})
    as_ingested = load_ingested(ingest.run(params, tmp_path / "ingested")).images[:1]
    expected = np.mean(
        [predict_probabilities(m, np.array(as_ingested), 8, "cpu") for m in ensemble.models], 0
    )
    np.testing.assert_allclose(ensemble.predict_proba([tmp_path / "screen.png"]), expected, atol=1e-6)
    np.testing.assert_allclose(ensemble.predict_proba(screen_frame(2)[0]), expected, atol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 1.01], ids=["every-image-anomaly", "no-image-anomaly"])
def test_predict_labels_images_at_the_registered_operating_point(tmp_path, threshold):
    from renalmae.evaluate.decision import DecisionRule

    rule = DecisionRule(threshold=threshold, chosen_on="a test")
    bundle = tmp_path / "bundle"
    bundle_ensemble(
        make_run_dirs(tmp_path / "runs", "usfmae", "binary", folds=2), "normal", bundle, rule=rule
    )
    table = predict_files(FoldEnsemble(bundle), None, user_files(tmp_path / "inbox"))

    assert set(table["predicted"]) == {"anomaly" if threshold == 0.0 else "normal"}
    assert set(table["decision_rule"]) == {rule.name}


def test_predict_without_a_registered_operating_point_says_it_used_the_argmax(tmp_path):
    bundle = tmp_path / "bundle"
    bundle_ensemble(make_run_dirs(tmp_path / "runs", "usfmae", "binary", folds=2), "normal", bundle)
    table = predict_files(FoldEnsemble(bundle), None, user_files(tmp_path / "inbox")[:1])
    assert table["decision_rule"].tolist() == ["argmax (no operating point registered)"]


def test_float_pixels_in_0_to_1_are_refused_not_turned_black(tmp_path):
    bundle = tmp_path / "bundle"
    bundle_ensemble(make_run_dirs(tmp_path / "runs", "usfmae", "binary", folds=2), "normal", bundle)
    scaled = np.random.default_rng(0).random((1, 32, 32))
    with pytest.raises(DataError, match="whole numbers in 0..255 .* scale them to 0..255 first"):
        FoldEnsemble(bundle).predict_proba(scaled)


@pytest.mark.parametrize("form", ["file", "array"])
def test_a_blank_image_is_refused_with_the_training_datas_not_blank_rule(tmp_path, form):
    """validate refused blank or constant training frames (`validate.min_pixel_std`); register bundles that
    rule and predict applies it: such a frame would otherwise get confident probabilities."""
    bundle = tmp_path / "bundle"
    runs = make_run_dirs(tmp_path / "runs", "usfmae", "binary", folds=2)
    assert bundle_ensemble(runs, "normal", bundle, min_pixel_std=2.0)["min_pixel_std"] == 2.0
    good = user_files(tmp_path / "inbox")
    constant = np.full((40, 40), 128, dtype=np.uint8)
    if form == "file":
        Image.fromarray(constant).save(tmp_path / "inbox" / "grey.png")
        sent, name = [*good, tmp_path / "inbox" / "grey.png"], str(tmp_path / "inbox" / "grey.png")
    else:
        sent, name = (
            np.stack([np.random.default_rng(0).integers(0, 256, (40, 40), np.uint8), constant]),
            "image 1",
        )

    with pytest.raises(DataError) as error:
        predict_files(FoldEnsemble(bundle), None, sent) if form == "file" else FoldEnsemble(
            bundle
        ).predict_proba(sent)
    assert str(error.value).startswith(
        f"{name}: blank or constant image (pixel standard deviation 0.00 < 2.0"
    )
    assert "validate.min_pixel_std" in str(error.value)
    assert len(FoldEnsemble(bundle).predict_proba(good)) == len(good)  # the others are scored
