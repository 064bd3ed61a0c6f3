"""The embedded default: no server at all, `sqlite:///mlflow.db` and ./mlruns in the working directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from registrykit import compared_runs, make_run_dirs, sample_images, write_validation

from renalmae.cli import main
from renalmae.errors import ParamsError
from renalmae.params import params_from_dict
from renalmae.registry import load_registered_model
from renalmae.registry.connection import mlflow_client
from renalmae.registry.pyfunc import FoldEnsemble, bundle_ensemble, read_image
from renalmae.registry.serving import load_ensemble
from renalmae.registry.versions import save_ensemble_model
from renalmae.steps import register

pytestmark = pytest.mark.integration


def test_register_promote_copy_and_predict_with_the_embedded_store(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = params_from_dict({})
    run_dirs, comparison = compared_runs(tmp_path / "models", "binary", folds=2)
    registered = register.run(
        params, run_dirs, comparison, write_validation(tmp_path / "val"), tmp_path / "r.json"
    )
    report = json.loads(registered.read_text())
    assert report["tracking_uri"] == "sqlite:///mlflow.db" and (tmp_path / "mlflow.db").is_file()
    assert report["models"][0]["alias_uri"] == "models:/renal-usfmae-binary@challenger"

    # a lock left behind by a crashed promoter (lease expired) does not block the next promotion
    stale_tags = {"renalmae.lock_token": "crashed", "renalmae.lock_expires": "0"}
    mlflow_client("sqlite:///mlflow.db").create_registered_model(
        "renal-usfmae-binary--promotion-lock", stale_tags
    )
    (tmp_path / "params.yaml").write_text("{}\n")
    production = f"sqlite:///{tmp_path / 'production.db'}"
    argv = ["promote", "--model", "renal-usfmae-binary", "--to-registry", production]
    assert main(argv) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["decision"] == "promoted" and decision["copied_to"]["version"] == "1"
    assert "renal-usfmae-binary--promotion-lock" not in [
        model.name for model in mlflow_client("sqlite:///mlflow.db").search_registered_models()
    ]
    copied = mlflow_client(production).get_model_version_by_alias("renal-usfmae-binary", "champion")
    assert copied.tags["renalmae.validation_status"] == "passed"

    image_path = tmp_path / "scan.png"
    Image.fromarray(sample_images(n=1, size=40)[0]).save(image_path)
    argv = ["predict", "--model", "models:/renal-usfmae-binary@champion", str(image_path)]
    assert main([*argv, "--explain", str(tmp_path / "cams")]) == 0
    table = capsys.readouterr().out
    assert "scan.png" in table and "prob_anomaly" in table
    blank = tmp_path / "blank.png"  # validate's not_blank rule, registered with the version, applies
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(blank)
    assert (
        main(["predict", "--model", "models:/renal-usfmae-binary@champion", str(image_path), str(blank)]) != 0
    )
    assert f"{blank}: blank or constant image (pixel standard deviation 0.00 < 2.0" in capsys.readouterr().err
    assert len(list((tmp_path / "cams").glob("*scan.png"))) == 1
    explained = json.loads((tmp_path / "cams" / "explanations.json").read_text())
    assert explained["fold_models"] == 2  # the served ensemble is explained, not its first fold model

    # a new site's own rule, chosen on a labelled sample of it, recorded on the version and applied by name
    site = tmp_path / "site-b"
    site.mkdir()
    rows = ["image,label,series_id"]
    for index, pixels in enumerate(sample_images(n=16, size=40)):
        Image.fromarray(pixels).save(site / f"{index}.png")
        rows.append(f"{index}.png,{'utd' if index % 2 else 'normal'},s{index // 2}")
    (site / "sample.csv").write_text("\n".join(rows) + "\n")
    champion = "models:/renal-usfmae-binary@champion"
    assert main(["site-rule", "--site", "clinic-b", "--model", champion, str(site / "sample.csv")]) == 0
    assert "chosen on 16 images (8 anomalous, 8 normal, 8 patients / series)" in capsys.readouterr().out
    tags = (
        mlflow_client("sqlite:///mlflow.db")
        .get_model_version_by_alias("renal-usfmae-binary", "champion")
        .tags
    )
    assert (
        tags["renalmae.site.clinic-b.n"] == "16" and "optimistic" in tags["renalmae.site.clinic-b.chosen_on"]
    )
    threshold = float(tags["renalmae.site.clinic-b.threshold"])
    assert main(["predict", "--model", champion, "--site", "clinic-b", "--json", str(image_path)]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["decision_rule"].startswith(
        f"P(anomaly) >= {threshold:.3f}, site clinic-b: 16 labelled images"
    )
    assert row["predicted"] == ("anomaly" if row["prob_anomaly"] >= threshold else "normal")
    assert main(["predict", "--model", champion, "--site", "clinic-c", str(image_path)]) != 0
    assert "carries no rule for site clinic-c (sites with a rule: clinic-b)" in capsys.readouterr().err

    models, info = load_registered_model("models:/renal-usfmae-binary@champion")  # the default store
    assert len(models) == 2 and info["classes"] == ["normal", "anomaly"] and info["image_size"] == 32

    bundle_ensemble(run_dirs, "normal", tmp_path / "bundle")
    expected = FoldEnsemble(tmp_path / "bundle").predict_proba([read_image(image_path)])
    np.testing.assert_allclose(explained["images"][0]["probability"], expected.max(), atol=1e-6)
    from_production = load_ensemble("models:/renal-usfmae-binary@champion", production)
    np.testing.assert_allclose(from_production.predict_proba([read_image(image_path)]), expected, atol=1e-6)

    # the plain MLflow pyfunc API (what `mlflow models predict / serve` use) takes uint8 [N, H, W] of any size
    import mlflow.pyfunc

    served = mlflow.pyfunc.load_model("models:/renal-usfmae-binary@champion").predict(
        read_image(image_path)[None]
    )
    assert list(served.columns) == ["prob_normal", "prob_anomaly"]
    np.testing.assert_allclose(served.to_numpy(), expected, atol=1e-6)
    with pytest.raises(
        Exception, match="image 0: blank or constant image"
    ):  # what `mlflow models serve` runs
        mlflow.pyfunc.load_model("models:/renal-usfmae-binary@champion").predict(
            np.zeros((1, 40, 40), np.uint8)
        )


def test_register_refuses_to_run_with_tracking_disabled(tmp_path):
    params = params_from_dict({"tracking": {"enabled": False}})
    with pytest.raises(ParamsError, match="tracking.enabled"):
        register.run(params, [], tmp_path, tmp_path, tmp_path / "registered.json")


def test_mlflow_models_predict_cli_serves_the_saved_model(tmp_path):
    run_dirs = make_run_dirs(tmp_path / "models", "usfmae", "binary", folds=2)
    bundle_ensemble(run_dirs, "normal", tmp_path / "bundle")
    save_ensemble_model(tmp_path / "bundle", tmp_path / "model")
    image = sample_images(n=1, size=40)
    (tmp_path / "input.json").write_text(json.dumps({"inputs": image.tolist()}))
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "predict",
        "-m",
        str(tmp_path / "model"),
    ]
    command += ["-i", str(tmp_path / "input.json"), "-t", "json", "--env-manager", "local"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])["predictions"]
    expected = FoldEnsemble(tmp_path / "bundle").predict_proba(image)
    np.testing.assert_allclose(
        [[row["prob_normal"], row["prob_anomaly"]] for row in served], expected, atol=1e-6
    )
