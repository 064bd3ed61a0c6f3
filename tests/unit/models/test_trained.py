import json

import pytest
import torch
from modelkit import IMAGE_SIZE, tiny_params

from renalmae.errors import ModelError
from renalmae.models import (
    create_model,
    load_encoder,
    load_encoder_into_vit,
    load_trained_model,
    model_spec,
    save_encoder,
    save_trained_model,
)

INFO = {
    "model": "usfmae",
    "task": "multiclass",
    "fold": 0,
    "classes": ["normal", "utd", "mcdk"],
    "image_size": 32,
}


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_saved_model_loads_back_with_identical_outputs(params, tmp_path, kind):
    model = create_model(kind, params, num_classes=3).eval()
    save_trained_model(tmp_path, model, model_spec(kind, params, 3), INFO)
    loaded, info = load_trained_model(tmp_path)
    images = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert not loaded.training
    torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)
    assert info["fold"] == 0 and info["spec"]["kind"] == kind


def test_weights_are_safetensors_and_run_json_holds_the_spec(params, tmp_path):
    spec = model_spec("vit", params, 3)
    save_trained_model(tmp_path, create_model("vit", params, num_classes=3), spec, INFO)
    assert (tmp_path / "weights.safetensors").read_bytes()[8:9] == b"{"  # safetensors: u64 size + JSON header
    assert json.loads((tmp_path / "run.json").read_text()) == {"spec": spec, **INFO}


def test_saving_keeps_other_keys_of_run_json(params, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"metrics": {"auc": 0.9}, "fold": 7}))
    save_trained_model(
        tmp_path, create_model("vit", params, num_classes=3), model_spec("vit", params, 3), INFO
    )
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["metrics"] == {"auc": 0.9} and record["fold"] == 0


@pytest.mark.slow
def test_compiled_model_saves_under_plain_names(params, tmp_path):
    model = create_model("vit", params, num_classes=3).eval()
    save_trained_model(tmp_path, torch.compile(model), model_spec("vit", params, 3), INFO)
    loaded, _ = load_trained_model(tmp_path)
    images = torch.randn(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_directory_without_run_json_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"run.json not found: .* is not a trained-model directory"):
        load_trained_model(tmp_path)


def test_missing_weights_file_is_refused(params, tmp_path):
    save_trained_model(
        tmp_path, create_model("vit", params, num_classes=3), model_spec("vit", params, 3), INFO
    )
    (tmp_path / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match=r"weights.safetensors not found"):
        load_trained_model(tmp_path)


def test_weights_of_another_architecture_are_refused(params, tmp_path):
    save_trained_model(tmp_path, create_model("mae", params), model_spec("vit", params, 3), INFO)
    with pytest.raises(ModelError, match=r"weights.safetensors does not match the spec"):
        load_trained_model(tmp_path)


def test_weights_of_another_class_count_are_refused(params, tmp_path):
    spec = model_spec("vit", params, 3)
    save_trained_model(tmp_path, create_model("vit", params, num_classes=2), spec, INFO)
    with pytest.raises(ModelError, match=r"weights.safetensors does not match the spec"):
        load_trained_model(tmp_path)


def test_corrupt_weights_file_is_refused(params, tmp_path):
    save_trained_model(
        tmp_path, create_model("vit", params, num_classes=3), model_spec("vit", params, 3), INFO
    )
    (tmp_path / "weights.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match=r"not a readable safetensors file"):
        load_trained_model(tmp_path)


def test_saved_encoder_initialises_the_classifier(params, tmp_path):
    mae = create_model("mae", params).eval()
    save_encoder(tmp_path, mae, model_spec("mae", params), {"epochs": 1})
    encoder_state, info = load_encoder(tmp_path)
    assert info == {"spec": model_spec("mae", params), "epochs": 1}
    vit = create_model("vit", params, num_classes=2).eval()
    report = load_encoder_into_vit(vit, encoder_state)
    assert sorted(report.missing) == ["head.bias", "head.weight"]
    images = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(
        vit.forward_features(images), mae.encoder.forward_features(images), rtol=0, atol=0
    )


def test_directory_without_encoder_is_refused(tmp_path):
    with pytest.raises(
        ModelError, match=r"encoder.json not found: .* holds no pretrained encoder; run pretrain"
    ):
        load_encoder(tmp_path)


def test_encoder_pretrained_at_another_width_is_refused_by_the_classifier(params, tmp_path):
    save_encoder(tmp_path, create_model("mae", params), model_spec("mae", params))
    encoder_state, _ = load_encoder(tmp_path)
    wider = create_model("vit", tiny_params(encoder={"embed_dim": 64, "num_heads": 4}), num_classes=2)
    with pytest.raises(ModelError, match=r"pretrained encoder does not fit this model .*make encoder.\*"):
        load_encoder_into_vit(wider, encoder_state)
