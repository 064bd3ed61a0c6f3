"""Parameters: the defaults are valid, and every mistake is refused with a message naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import yaml

from renalmae.errors import ParamsError
from renalmae.models.checkpoints import INPUT_NORMALISATIONS
from renalmae.params import InputNormalisation, Params, load_params, params_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE_FILES = [REPO_ROOT / "params.yaml", *sorted((REPO_ROOT / "profiles").glob("*.yaml"))]


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda path: path.name)
def test_every_shipped_params_file_is_valid(path):
    assert isinstance(load_params(path), Params)


def test_params_yaml_lists_every_knob_explicitly():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    defaults = Params().to_dict()
    for section, values in defaults.items():
        assert section in raw, f"params.yaml lacks section `{section}`"
        if isinstance(values, dict):
            assert set(raw[section]) == set(values), f"params.yaml `{section}` keys differ from the schema"


def test_unknown_key_is_refused_naming_it_and_the_allowed_keys():
    with pytest.raises(
        ParamsError, match=r"unknown key `split.kfolds`.*allowed keys here: external_folds, folds, seed"
    ):
        params_from_dict({"split": {"kfolds": 3}})


def test_unknown_section_is_refused():
    with pytest.raises(ParamsError, match=r"unknown key `trainer`"):
        params_from_dict({"trainer": {}})


def test_invalid_choice_names_the_allowed_values():
    with pytest.raises(ParamsError, match=r"`train.device`: must be one of 'auto', 'cpu' or 'cuda'"):
        params_from_dict({"train": {"device": "tpu"}})


def test_out_of_range_value_is_refused():
    with pytest.raises(ParamsError, match=r"`mae.mask_ratio`"):
        params_from_dict({"mae": {"mask_ratio": 1.5}})


def test_folds_must_be_a_range():
    with pytest.raises(ParamsError, match=r"folds must be \[0, 1, ..., k-1\]"):
        params_from_dict({"split": {"folds": [0, 2]}})


def test_negative_class_must_be_a_class():
    with pytest.raises(ParamsError, match="negative_class 'healthy' must be one of"):
        params_from_dict({"data": {"negative_class": "healthy"}})


def test_missing_params_file_names_the_path(tmp_path):
    with pytest.raises(ParamsError, match="not found; pass --params"):
        load_params(tmp_path / "nope.yaml")


def test_broken_yaml_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("split: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_params_hash_changes_with_any_value():
    assert Params().hash() == Params().hash()
    assert Params().hash() != params_from_dict({"seed": 1}).hash()


@pytest.mark.parametrize("section", ["pretrain", "baseline"])
def test_init_checkpoint_without_its_pretraining_data_is_refused(section):
    with pytest.raises(
        ParamsError, match=rf"{section}.init_checkpoint is set but {section}.init_checkpoint_data"
    ):
        params_from_dict({section: {"init_checkpoint": "weights.pth"}})


def test_unknown_checkpoint_normalisation_is_refused():
    with pytest.raises(ParamsError, match=r"`pretrain.init_checkpoint_norm`: must be one of 'imagenet' or"):
        params_from_dict({"pretrain": {"init_checkpoint_norm": "clip"}})


def test_checkpoint_normalisations_are_the_ones_the_loader_knows():
    assert set(get_args(InputNormalisation)) == set(INPUT_NORMALISATIONS)
