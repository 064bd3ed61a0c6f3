"""A champion is served only with its gate decision: the bypass (an alias set by hand) is refused by every
loader and flagged by `renalmae audit`; every alias move and refused promotion leaves a record."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from registrykit import register_bundle

from renalmae.cli import main
from renalmae.errors import GateError, ModelError
from renalmae.params import RegistryParams
from renalmae.registry.audit import AUDIT_EXPERIMENT, audit_registry
from renalmae.registry.connection import mlflow_client
from renalmae.registry.promote import promote, rollback
from renalmae.registry.serving import predict_files

# a wide margin: these tests are about the record, not the statistics
SETTINGS = RegistryParams(noninferiority_margin=0.5)


@pytest.fixture
def registry(store_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    (tmp_path / "params.yaml").write_text("registry:\n  noninferiority_margin: 0.5\n")
    image = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)).save(image)
    return store_uri, mlflow_client(store_uri), image


def audit_moves(client, name: str) -> list[tuple[str, str, str, str]]:
    """(action, from, to, decision) of the recorded moves of `name`, oldest first."""
    experiment = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], f"tags.`audit.name` = '{name}'")
    runs = sorted(runs, key=lambda run: run.info.start_time)
    return [
        tuple(run.data.tags[f"audit.{key}"] for key in ("action", "from_version", "to_version", "decision"))
        for run in runs
    ]


def test_a_champion_set_by_hand_is_refused_by_predict_and_the_model_load_and_flagged_by_audit(
    registry, tmp_path, capsys
):
    uri, client, image = registry
    name = "bypass-usfmae-binary"
    register_bundle(uri, tmp_path / "v1", name)
    promote(uri, name, "1", SETTINGS)
    register_bundle(uri, tmp_path / "v2", name, seed=3)
    assert main(["audit", "--model", name]) == 0
    client.set_registered_model_alias(name, "champion", "2")  # the bypass: one client call, no gate

    with pytest.raises(ModelError) as refused:
        predict_files(f"models:/{name}@champion", uri, [image])
    fix = f"`renalmae promote --model {name} --version 2`"
    assert "v2 carries no passing gate decision" in str(refused.value) and fix in str(refused.value)
    capsys.readouterr()
    assert main(["predict", "--model", f"models:/{name}@champion", str(image)]) != 0
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and fix in error_lines[0]
    import mlflow.pyfunc  # what `mlflow models serve -m models:/NAME@champion` runs

    with pytest.raises(ModelError, match="v2 carries no passing gate decision"):
        mlflow.pyfunc.load_model(f"models:/{name}@champion")
    with pytest.raises(ModelError, match="no passing gate decision"):
        mlflow.pyfunc.load_model(f"models:/{name}/2")  # the same version by number: still the champion

    assert main(["audit", "--model", name]) != 0
    captured = capsys.readouterr()
    flagged = [line for line in captured.out.splitlines() if "FLAGGED" in line]
    assert len(flagged) == 1 and flagged[0].startswith(f"{name}@champion v2  FLAGGED")
    assert f"{name}@challenger v2  OK" in captured.out
    assert "1 alias(es)" in captured.err and fix in captured.err


def test_a_champion_moved_by_hand_to_a_version_that_once_passed_is_refused_too(registry, tmp_path):
    uri, client, image = registry
    name = "moved-usfmae-binary"
    for version, seed in (("1", 0), ("2", 3)):
        register_bundle(uri, tmp_path / f"v{version}", name, seed=seed)
        promote(uri, name, version, SETTINGS)
    client.set_registered_model_alias(name, "champion", "1")  # a hand-made rollback, unrecorded

    with pytest.raises(ModelError, match="the last recorded move put `champion` on v2, not on v1"):
        predict_files(f"models:/{name}@champion", uri, [image])
    (record,) = [record for record in audit_registry(uri, name) if record.alias == "champion"]
    assert record.problem and "moved outside renalmae" in record.problem

    rollback(uri, name, "1")  # the recorded way
    assert predict_files(f"models:/{name}@champion", uri, [image])["predicted"].size == 1
    assert audit_moves(client, name)[-1] == ("rollback", "1", "1", "passed")


def test_promote_gates_a_hand_set_champion_and_then_serves_it(registry, tmp_path):
    uri, client, image = registry
    name = "repaired-usfmae-binary"
    register_bundle(uri, tmp_path / "v1", name)
    promote(uri, name, "1", SETTINGS)
    register_bundle(uri, tmp_path / "v2", name, seed=3)
    client.set_registered_model_alias(name, "champion", "2")

    decision = promote(uri, name, "2", SETTINGS)

    assert decision["decision"] == "promoted" and decision["compared_with"] == "1"
    assert predict_files(f"models:/{name}@champion", uri, [image])["predicted"].size == 1
    assert all(record.problem is None for record in audit_registry(uri, name))


def test_the_gate_decision_travels_with_the_version(registry, tmp_path):
    uri, client, _ = registry
    name = "decided-usfmae-binary"
    register_bundle(uri, tmp_path / "v1", name)
    promote(uri, name, "1", SETTINGS)
    register_bundle(uri, tmp_path / "v2", name, seed=3)
    promote(uri, name, "2", SETTINGS)

    tags = client.get_model_version(name, "2").tags
    assert tags["promotion.decision"] == "promoted"
    assert tags["promotion.by"] == "alice"
    assert tags["promotion.compared_with"] == "1" and tags["promotion.previous_champion"] == "1"
    assert tags["promotion.evaluation_set_sha256"] == tags["renalmae.evaluation_set_sha256"]
    assert tags["promotion.evaluation_set_data_version"] == "phantom-test"
    assert tags["promotion.decisions_on_evaluation_set"] == "2"  # the second decision on the set
    assert tags["promotion.margin"] == "0.5" and tags["promotion.alpha"] == "0.05"
    evidence = json.loads(tags["promotion.evidence"])
    assert tags["promotion.interval"] == f"AUC difference >= {evidence['lower_bound']:+.4f} (one-sided 95%)"
    assert tags["promotion.code_version"].startswith("renalmae ")
    assert tags["promotion.at"].endswith("Z")


def test_every_alias_move_and_refusal_is_recorded_with_who_from_and_to(registry, tmp_path):
    uri, client, _ = registry
    name = "recorded-usfmae-binary"
    register_bundle(uri, tmp_path / "v1", name)
    promote(uri, name, "1", SETTINGS)
    register_bundle(uri, tmp_path / "v2", name, seed=3, **{"holdout.auc": "0.1"})
    with pytest.raises(GateError, match="holdout AUC 0.1 is below registry.min_auc"):
        promote(uri, name, "2", SETTINGS)
    register_bundle(uri, tmp_path / "v3", name, seed=4)
    promote(uri, name, "3", SETTINGS)
    rollback(uri, name)

    assert audit_moves(client, name) == [
        ("register", "None", "1", "none"),
        ("promote", "None", "1", "passed"),
        ("register", "1", "2", "none"),
        ("refused", "1", "1", "failed"),
        ("register", "2", "3", "none"),
        ("promote", "1", "3", "passed"),
        ("rollback", "3", "1", "passed"),
    ]
    refused = client.get_model_version(name, "2").tags
    assert "promotion.decision" not in refused
    assert refused["refusal.by"] == "alice" and "holdout AUC 0.1" in refused["refusal.reasons"]
    experiment = client.get_experiment_by_name(AUDIT_EXPERIMENT)
    (refusal_run,) = client.search_runs([experiment.experiment_id], f"tags.`audit.name` = '{name}' and "
                                        "tags.`audit.action` = 'refused'")  # fmt: skip
    assert refusal_run.data.tags["mlflow.user"] == "alice"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"


def test_rollback_refuses_a_version_that_never_passed_the_gate(registry, tmp_path):
    uri, _, _ = registry
    name = "norollback-usfmae-binary"
    register_bundle(uri, tmp_path / "v1", name)
    with pytest.raises(GateError, match=f"`renalmae promote --model {name} --version 1`"):
        rollback(uri, name, "1")
    promote(uri, name, "1", SETTINGS)
    with pytest.raises(GateError, match="nothing to roll back to"):
        rollback(uri, name)


def test_registered_versions_are_models_from_code_without_pickles(registry, tmp_path, caplog):
    uri, client, _ = registry
    name = "nopickle-usfmae-binary"
    with caplog.at_level(logging.WARNING):
        _, version = register_bundle(uri, tmp_path / "v1", name)

    import mlflow.artifacts

    model_dir = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path / "m"))
    )
    files = {path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*") if path.is_file()}
    assert not [path for path in files if path.endswith((".pkl", ".pickle"))]
    assert "served_model.py" in files and "code/renalmae/registry/pyfunc.py" in files
    assert {
        "artifacts/bundle/fold0/weights.safetensors",
        "artifacts/bundle/fold1/weights.safetensors",
    } <= files
    assert not [record for record in caplog.records if "pickle" in record.getMessage().lower()]
    registered = client.get_model_version(name, version.version)
    # self-contained: a fresh process that loads the version imports renalmae from the copy logged with it
    code = (
        "import mlflow.pyfunc, sys; mlflow.pyfunc.load_model(sys.argv[1]); import renalmae; "
        "print(renalmae.__file__)"
    )
    loaded = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300, check=True)  # fmt: skip
    assert Path(loaded.stdout.strip()) == model_dir / "code" / "renalmae" / "__init__.py"
    logged = client.get_logged_model(registered.source.removeprefix("models:/"))  # a LoggedModel of the run
    assert logged.source_run_id == registered.run_id and logged.name == "model"


def test_a_version_registered_as_a_pickle_is_refused_before_it_is_downloaded(registry, tmp_path):
    import mlflow
    import mlflow.pyfunc
    from registrykit import make_run_dirs

    from renalmae.registry.pyfunc import ENSEMBLE_ARTIFACT, FoldEnsembleModel, bundle_ensemble

    uri, _, image = registry
    bundle = tmp_path / "bundle"
    bundle_ensemble(make_run_dirs(tmp_path / "runs", "usfmae", "binary", folds=2), "normal", bundle)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():  # how versions were logged before models-from-code
        mlflow.pyfunc.log_model(
            name="model", python_model=FoldEnsembleModel(), artifacts={ENSEMBLE_ARTIFACT: str(bundle)},
            registered_model_name="pickled-usfmae-binary", pip_requirements=[],
        )  # fmt: skip

    with pytest.raises(
        ModelError, match="holds a pickled model, which renalmae does not load; register it again"
    ):
        predict_files("models:/pickled-usfmae-binary/1", uri, [image])
