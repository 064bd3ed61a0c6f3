"""The pretrain component, called as a plain function: the encoder lands in its output model."""

from kfp.dsl import Dataset, Metrics, Model

from components.pretrain.component import pretrain
from components.testkit import artifact, step_or_skip


def test_pretrain_writes_the_encoder_into_the_model(params_yaml, ingested, splits, tmp_path):
    step_or_skip("pretrain")
    encoder = artifact(Model, tmp_path / "encoder")

    pretrain.python_func(
        params_yaml=params_yaml,
        ingested=artifact(Dataset, ingested),
        splits=artifact(Dataset, splits),
        encoder=encoder,
        metrics=artifact(Metrics, tmp_path / "metrics"),
    )

    assert any((tmp_path / "encoder").iterdir())
