"""Two gloo ranks under `torchrun` train exactly like one process on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = r"""
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[2])
from trainkit import TinyClassifier, draw_images
from renalmae.params import AugmentParams, TrainParams
from renalmae.train.distributed import setup
from renalmae.train.engine import FitConfig, classification_objective, fit

torch.set_num_threads(1)
labels = ["normal", "utd"] * 16
images = draw_images(labels, seed=0)
targets = np.array([label == "utd" for label in labels], dtype=np.int64)
torch.manual_seed(0)
model = TinyClassifier()
train = TrainParams(device="cpu", cpu_threads=1, progress=False, log_every_steps=1)
config = FitConfig(epochs=1, batch_size=8, lr=1e-2, warmup_epochs=0, weight_decay=0.01, clip_grad=1.0, seed=0)
context = setup("cpu", cpu_threads=1)
objective = classification_objective()
result = fit(model, images, targets, objective, config, train, AugmentParams(), context=context)
if context.is_main:
    weights = {k: v.flatten().tolist() for k, v in model.state_dict().items()}
    losses = [loss for _, _, loss in result.step_losses]
    json.dump({"losses": losses, "weights": weights}, open(sys.argv[1], "w"))
if context.enabled:
    torch.distributed.destroy_process_group()
"""


# The three torchrun tests cost about 40 CPU-s each (a launcher and two ranks importing torch): the default
# run keeps the end-to-end one (`launch.run_step`, MAE masking and augmentation included); these two are slow.
@pytest.mark.slow
def test_two_ranks_match_one_process_on_the_same_global_batch(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    helpers = str(Path(__file__).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    single, double = tmp_path / "single.json", tmp_path / "ddp.json"
    subprocess.run([sys.executable, str(script), str(single), helpers], check=True, env=env, timeout=300)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         str(script), str(double), helpers],
        check=True, env=env, timeout=300,
    )  # fmt: skip
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert len(one["losses"]) == len(two["losses"]) == 4
    np.testing.assert_allclose(two["losses"], one["losses"], atol=1e-5)
    for name, values in one["weights"].items():
        np.testing.assert_allclose(two["weights"][name], values, atol=1e-5, err_msg=name)


def test_pretraining_under_torchrun_on_two_cpu_processes_gives_the_single_process_encoder(tmp_path, dataset):
    """The launch path the CLI and the KFP component take for `pretrain.gpus: 2` (`launch.run_step`: the
    step's CLI command under torchrun, each rank running the step itself): MAE masking and augmentation
    included."""
    from safetensors.numpy import load_file
    from trainkit import tiny_params

    from renalmae import launch
    from renalmae.steps import pretrain

    ingest_dir, splits_path = dataset
    params = tiny_params(pretrain={"epochs": 1, "batch_size": 16, "gpus": 2})
    single = pretrain.run(params, ingest_dir, splits_path, tmp_path / "single")
    inputs = {"ingest_dir": ingest_dir, "splits_path": splits_path}
    launch.run_step(pretrain, params, inputs, {}, tmp_path / "two-ranks")

    expected, actual = (
        load_file(single / "encoder.safetensors"),
        load_file(tmp_path / "two-ranks" / "encoder.safetensors"),
    )
    assert expected.keys() == actual.keys()
    for name, values in expected.items():
        np.testing.assert_allclose(actual[name], values, atol=1e-5, err_msg=name)
    losses_single = json.loads((single / "metrics.json").read_text())["final_loss"]
    losses_two = json.loads((tmp_path / "two-ranks" / "metrics.json").read_text())["final_loss"]
    assert losses_two == pytest.approx(losses_single, abs=1e-5)


@pytest.mark.slow
def test_a_failing_rank_stops_the_launch_with_one_message(tmp_path):
    from renalmae.errors import RenalMAEError
    from renalmae.train.distributed import run_under_torchrun

    with pytest.raises(
        RenalMAEError, match=r"`renalmae pretrain` under torchrun \(2 processes\) exited with code"
    ):
        run_under_torchrun(["pretrain", "--params", str(tmp_path / "missing.yaml")], nproc_per_node=2)
