"""The `explain` step and the single-image entry point, on a tiny phantom set and untrained tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from explainkit import tiny_params
from PIL import Image

from renalmae.cli import main as cli_main
from renalmae.data.cache import load_ingested
from renalmae.data.predictions import PREDICTIONS_FILE, task_classes, task_targets, write_predictions
from renalmae.data.splits import load_splits
from renalmae.errors import DataError
from renalmae.explain.figures import LABEL_BAND_PX
from renalmae.explain.images import explain_images
from renalmae.models.factory import create_model, model_spec
from renalmae.models.trained import save_trained_model
from renalmae.steps.explain import run as explain_step

PARAMS = tiny_params()


def make_run(root: Path, ingest: tuple[Path, Path], kind: str, name: str, task: str, fold: int, skill: float):
    """A trained-model dir with an (untrained) model and validation predictions of the given `skill`."""
    ingest_dir, splits_path = ingest
    classes = task_classes(PARAMS.data.classes, PARAMS.data.negative_class, task)
    run_dir = root / name / task / f"fold{fold}"
    role = "candidate" if kind == "vit" else "baseline"
    info = {"model": name, "role": role, "task": task, "fold": fold, "classes": classes, "image_size": 32}
    save_trained_model(
        run_dir, create_model(kind, PARAMS, len(classes)), model_spec(kind, PARAMS, len(classes)), info
    )
    val = load_ingested(ingest_dir).rows(load_splits(splits_path).fold(fold)[1])
    y_true = task_targets(val["label"], PARAMS.data.classes, PARAMS.data.negative_class, task)
    probabilities = np.full((len(val), len(classes)), (1 - skill) / len(classes))
    probabilities[np.arange(len(val)), y_true] += skill
    frame = pd.DataFrame({"id": val["id"], "model": name, "task": task, "fold": fold, "split": "val",
                          "y_true": y_true})  # fmt: skip
    for index, class_name in enumerate(classes):
        frame[f"prob_{class_name}"] = probabilities[:, index]
    write_predictions(run_dir / PREDICTIONS_FILE, frame, classes)
    return run_dir


@pytest.fixture(scope="module")
def explained(tiny_ingest, tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("runs")
    runs = [
        make_run(root, tiny_ingest, "vit", "usfmae", "binary", 0, skill=0.0),
        make_run(root, tiny_ingest, "vit", "usfmae", "binary", 1, skill=0.5),
        make_run(root, tiny_ingest, "vit", "usfmae", "multiclass", 0, skill=0.5),
        make_run(root, tiny_ingest, "cnn", "densenet169", "multiclass", 0, skill=0.5),
    ]
    out_dir = explain_step(PARAMS, *tiny_ingest, run_dirs=runs, out_dir=root / "reports" / "explain")
    return Path(out_dir), runs


def test_localisation_is_reported_per_model_task_weighting_and_lesion_class_with_intervals(explained):
    out_dir, _ = explained
    localisation = json.loads((out_dir / "localisation.json").read_text())["test"]
    measured = pd.read_parquet(out_dir / "measurements.parquet")
    assert set(localisation) == {"usfmae", "densenet169"}
    assert set(localisation["usfmae"]) == {"binary", "multiclass"}
    assert set(localisation["usfmae"]["multiclass"]) == {"score", "softmax"}
    lesion_images = measured[measured["measured"] & measured["has_mask"]]
    assert lesion_images["id"].nunique() == PARAMS.explain.max_images  # every lesion image, up to the cap
    for lesion in ("utd", "mcdk"):
        entry = localisation["usfmae"]["multiclass"]["score"][lesion]
        assert entry["energy_in_mask"]["n"] == lesion_images[lesion_images["label"] == lesion]["id"].nunique()
        assert 0.0 <= entry["energy_in_mask"]["mean"] <= 1.0
        assert entry["energy_ratio_vs_uniform"]["low"] <= entry["energy_ratio_vs_uniform"]["mean"]
        assert entry["energy_ratio_vs_uniform"]["mean"] <= entry["energy_ratio_vs_uniform"]["high"]
    assert "normal" not in localisation["densenet169"]["multiclass"]["score"]  # normal kidneys: no mask


def test_faithfulness_and_class_sensitivity_are_reported_beside_a_random_order(explained):
    out_dir, _ = explained
    faithfulness = json.loads((out_dir / "faithfulness.json").read_text())["test"]
    entry = faithfulness["densenet169"]["multiclass"]["softmax"]["all"]
    for metric in ("deletion_auc", "deletion_auc_random", "insertion_auc", "insertion_auc_random"):
        assert 0.0 <= entry[metric]["mean"] <= 1.0
    assert -1.0 <= entry["class_correlation"]["mean"] <= 1.0


def test_each_explained_layer_reports_its_grid_and_warns_when_it_is_coarse(explained):
    out_dir, _ = explained
    selection = json.loads((out_dir / "selection.json").read_text())
    vit = next(entry for entry in selection if entry["model"] == "usfmae")
    assert vit["grid"] == [4, 4] and vit["channels"] == vit["layer_channels"] == 16  # 32 px, patch 8
    assert "below 7 × 7" in vit["grid_warning"]
    cnn = next(entry for entry in selection if entry["model"] == "densenet169")
    assert cnn["channels"] == PARAMS.explain.cnn_channels < cnn["layer_channels"]


def test_the_fold_with_the_best_validation_auc_is_explained(explained):
    out_dir, runs = explained
    selection = json.loads((out_dir / "selection.json").read_text())
    binary = next(entry for entry in selection if entry["model"] == "usfmae" and entry["task"] == "binary")
    assert binary["fold"] == 1 and binary["run_dir"] == str(runs[1])


def test_overlays_have_four_panels_per_sampled_image(explained):
    out_dir, _ = explained
    overlays = sorted((out_dir / "figures" / "test" / "usfmae" / "multiclass").glob("*_*.png"))
    assert [path.name.split("_")[0] for path in overlays].count("utd") == 2
    assert len(overlays) == 6  # 2 images per class, 3 classes
    width, height = Image.open(overlays[0]).size
    assert width > 4 * (height - LABEL_BAND_PX) - 16  # image | CAM | overlay | mask outline, side by side
    assert (out_dir / "figures" / "test" / "densenet169" / "multiclass" / "grid.png").is_file()


def test_html_page_is_self_contained(explained):
    page = (out_dir := explained[0]) and (out_dir / "index.html").read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    for heading in ("Layers", "Localisation against lesion masks", "Faithfulness and class sensitivity"):
        assert f"<h2>{heading}</h2>" in page
    assert "energy ratio vs uniform" in page and "deletion AUC" in page


def test_the_page_opens_with_the_answers_then_the_pictures_then_the_tables(explained):
    page = (explained[0] / "index.html").read_text()
    answers, first_picture = page.index("<h2>The answers</h2>"), page.index("<img")
    assert answers < first_picture < page.index("<h2>Lesion test</h2>") < page.index("<h2>Layers</h2>")
    opening = page[answers:first_picture]
    assert "uses the lesion?" in opening and "maps agree with occlusion?" in opening
    assert opening.count("<tr>") == 1 + 3  # header + one row per explained model and task
    assert re.search(r"<td>(yes|no) \(", opening)  # an answer with its numbers
    assert "score: r = " in opening and "softmax: r = " in opening
    assert re.search(r"map: score \d+%, softmax \d+%; occlusion: \d+%", opening)


def test_the_lesion_test_and_occlusion_agreement_are_measured_per_image_and_summarised(explained):
    out_dir, _ = explained
    measured = pd.read_parquet(out_dir / "measurements.parquet")
    rows = measured[measured["measured"] & measured["has_mask"] & (measured["weighting"] == "score")]
    assert (rows["placements"] == PARAMS.explain.lesion_placements).all()
    assert rows["lesion_drop"].notna().all() and rows["elsewhere_drop"].notna().all()
    np.testing.assert_allclose(rows["lesion_excess"], rows["lesion_drop"] - rows["elsewhere_drop"])
    occluded = measured[measured["occluded"] & (measured["weighting"] == "score")]
    assert (occluded.groupby(["model", "task"])["id"].nunique() == PARAMS.explain.occlusion_images).all()
    assert occluded["occlusion_spearman"].between(-1, 1).any()
    faithfulness = json.loads((out_dir / "faithfulness.json").read_text())["test"]
    lesion = faithfulness["usfmae"]["multiclass"]["lesion_test"]
    assert set(lesion) == {"utd", "mcdk", "all"}  # normal kidneys have no lesion mask
    usfmae_multiclass = rows[(rows["model"] == "usfmae") & (rows["task"] == "multiclass")]
    assert lesion["all"]["lesion_drop"]["n"] == usfmae_multiclass["id"].nunique()
    assert faithfulness["usfmae"]["multiclass"]["score"]["all"]["occlusion_spearman"]["n"] > 0


def test_the_external_set_is_measured_and_reported_first(explained, tiny_ingest, tmp_path):
    ingest_dir, splits_path = tiny_ingest
    splits = json.loads(splits_path.read_text())
    splits["external"], splits["test"] = splits["test"][::2], splits["test"][1::2]
    with_external = tmp_path / "splits.json"
    with_external.write_text(json.dumps(splits))
    runs = [run for run in explained[1] if "usfmae/binary" in str(run)]
    out_dir = explain_step(PARAMS, ingest_dir, with_external, run_dirs=runs, out_dir=tmp_path / "explain")
    assert list(json.loads((out_dir / "localisation.json").read_text())) == ["external", "test"]
    faithfulness = json.loads((out_dir / "faithfulness.json").read_text())
    lesion = faithfulness["external"]["usfmae"]["binary"]["lesion_test"]
    measured = pd.read_parquet(out_dir / "measurements.parquet")
    external = measured[(measured["set"] == "external") & measured["measured"] & measured["has_mask"]]
    assert set(external["id"]) <= set(splits["external"])
    assert lesion["all"]["lesion_drop"]["n"] == external["id"].nunique() > 0
    page = (out_dir / "index.html").read_text()
    opening = page[page.index("<h2>The answers</h2>") : page.index("<img")]
    assert opening.index("external set") < opening.index("internal holdout")
    assert (out_dir / "figures" / "external" / "usfmae" / "binary" / "grid.png").is_file()


def test_step_without_trained_models_is_refused(tiny_ingest, tmp_path):
    with pytest.raises(DataError, match="no trained-model directories"):
        explain_step(PARAMS, *tiny_ingest, run_dirs=[], out_dir=tmp_path / "explain")


def test_explain_images_writes_an_overlay_per_image_file(explained, tiny_ingest, tmp_path):
    images = load_ingested(tiny_ingest[0]).images
    paths = []
    for index in range(2):
        paths.append(tmp_path / f"scan{index}.png")
        Image.fromarray(np.asarray(images[index])).resize((50, 40)).save(paths[-1])
    out_dir = explain_images(explained[1][2], paths, tmp_path / "out", settings=PARAMS.explain)
    record = json.loads((out_dir / "explanations.json").read_text())
    assert [Path(entry["image"]).name for entry in record["images"]] == ["scan0.png", "scan1.png"]
    assert all(entry["predicted"] in PARAMS.data.classes for entry in record["images"])
    assert len(list(out_dir.glob("*.png"))) == 2 and (out_dir / "index.html").is_file()


def test_explain_images_refuses_an_unreadable_file(explained, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        explain_images(explained[1][2], [bad], tmp_path / "out")


def test_cli_explains_image_files_with_a_run_dir(explained, tiny_ingest, tmp_path, monkeypatch, repo_root):
    image = tmp_path / "scan.png"
    Image.fromarray(np.asarray(load_ingested(tiny_ingest[0]).images[0])).save(image)
    monkeypatch.chdir(repo_root)
    code = cli_main(["explain", "--model", str(explained[1][2]), str(image), "--out", str(tmp_path / "cli")])
    assert code == 0
    assert (tmp_path / "cli" / "explanations.json").is_file()


def test_cli_explain_with_a_model_but_no_images_is_refused(repo_root, monkeypatch, capsys):
    monkeypatch.chdir(repo_root)
    assert cli_main(["explain", "--model", "models/finetune/binary/fold0"]) != 0
    assert "IMAGE files" in capsys.readouterr().err
