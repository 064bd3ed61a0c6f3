"""Training throughput of the project's own loop against a reference-style recipe, measured in one run.

For each workload — MAE pretraining (ViT-B/16, 224 px, mask 0.75, decoder 512 × 8), ViT-B/16 fine-tuning
and DenseNet-169 — it runs

* **ours**: `renalmae.train.engine.fit`, the real data path included: images in a memory-mapped uint8
  cache, moved to the device once and augmented there; bf16 autocast, fused attention, fused AdamW,
  channels-last for the CNN, optionally `torch.compile` (`--compile`);
* **reference**: the recipe of the original MAE code: a `DataLoader` that decodes one JPEG per image with
  PIL and augments it on the host, fp16 autocast with a gradient scaler, unfused attention, eager,
  default (foreach) AdamW;

and prints images/s, peak GPU memory and ours / reference. `--tiny` runs small models on the CPU (fp32
both, so the ratio there shows the data path and loop overhead only). Timing never decides a test;
this script always exits 0.

    python benchmarks/throughput.py                 # CUDA: the paper's sizes
    python benchmarks/throughput.py --compile       # ... with torch.compile
    python benchmarks/throughput.py --tiny          # CPU smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from renalmae.models import create_model
from renalmae.params import Params, params_from_dict
from renalmae.train.engine import FitConfig, classification_objective, fit, mae_objective

PAPER_SIZES = {
    "data": {"image_size": 224},
    "encoder": {
        "arch": "vit_base_patch16_224",
        "patch_size": 16,
        "embed_dim": None,
        "depth": None,
        "num_heads": None,
    },
    "mae": {"mask_ratio": 0.75, "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16},
}
TINY_SIZES = {
    "data": {"image_size": 32},
    "encoder": {"arch": "vit_tiny_patch16_224", "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3},
    "mae": {"mask_ratio": 0.75, "decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4},
}


@dataclass
class Measurement:
    images_per_second: float
    peak_memory_gib: float | None


def build_params(tiny: bool, compile_model: bool, log_every: int) -> Params:
    sizes = TINY_SIZES if tiny else PAPER_SIZES
    train = {
        "device": "cpu" if tiny else "cuda",
        "precision": "fp32" if tiny else "bf16",
        "compile": compile_model,
        "log_every_steps": log_every,
        "progress": False,
        "checkpoint_every_steps": 10**9,
    }
    return params_from_dict({**sizes, "train": train, "baseline": {"arch": "densenet169"}})


def write_uint8_cache(directory: Path, count: int, size: int, seed: int = 0) -> np.ndarray:
    """A memory-mapped uint8 image cache like the one ingest writes (speckle-like random pixels)."""
    rng = np.random.default_rng(seed)
    cache = np.lib.format.open_memmap(
        directory / "images.npy", mode="w+", dtype=np.uint8, shape=(count, size, size)
    )
    for start in range(0, count, 512):
        block = rng.rayleigh(60.0, size=(min(512, count - start), size, size))
        cache[start : start + len(block)] = np.clip(block, 0, 255).astype(np.uint8)
    cache.flush()
    return np.load(directory / "images.npy", mmap_mode="r")


def write_jpegs(directory: Path, cache: np.ndarray, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = directory / f"{index:06d}.jpg"
        Image.fromarray(np.asarray(cache[index])).save(path, quality=90)
        paths.append(path)
    return paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def measure_ours(kind: str, params: Params, cache: np.ndarray, batch_size: int, epochs: int) -> Measurement:
    """Images/s of `fit` between the first and the last metrics callback (compilation excluded)."""
    device = torch.device(params.train.device)
    model = create_model(kind, params, num_classes=None if kind == "mae" else 3)
    targets = None if kind == "mae" else np.arange(len(cache)) % 3
    objective = (
        mae_objective(params.mae.mask_ratio, model.encoder.patch_embed.num_patches)
        if kind == "mae"
        else classification_objective()
    )
    config = FitConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-4,
        warmup_epochs=0.0,
        weight_decay=0.05,
        channels_last=kind == "cnn",
        clip_grad=None if kind == "mae" else 1.0,
    )
    steps_per_epoch = max(1, len(cache) // batch_size)
    epochs = max(epochs, math.ceil(3 * params.train.log_every_steps / steps_per_epoch) + 1)
    config = dataclasses.replace(config, epochs=epochs)
    marks: list[tuple[int, float]] = []

    def on_metrics(values: dict[str, float], step: int) -> None:
        if "train_loss" in values:  # read back from the device: the step is finished
            marks.append((step, time.perf_counter()))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    fit(model, cache, targets, objective, config, params.train, params.augment, on_metrics=on_metrics)
    (first_step, first_time), (last_step, last_time) = marks[1], marks[-1]
    return Measurement((last_step - first_step) * batch_size / (last_time - first_time), _peak_memory(device))


class JpegDataset(Dataset):
    """The reference data path: decode one JPEG per image with PIL and augment it on the host."""

    def __init__(self, paths: list[Path], size: int):
        self.paths = paths
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(
                    size, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC
                ),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([0.5], [0.25]),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("L")), index % 3


def unfuse_attention(model: torch.nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False


def measure_reference(
    kind: str, params: Params, paths: list[Path], batch_size: int, steps: int, workers: int
) -> Measurement:
    """Images/s of the reference recipe over `steps` steps after a few warm-up steps."""
    device = torch.device(params.train.device)
    model = create_model(kind, params, num_classes=None if kind == "mae" else 3).to(device)
    unfuse_attention(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    use_fp16 = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)
    loader = DataLoader(
        JpegDataset(paths, params.data.image_size),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )
    warmup = 3
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    done, start = 0, None
    while done < warmup + steps:
        for inputs, targets in loader:
            if done == warmup:
                _sync(device)
                start = time.perf_counter()
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_fp16):
                if kind == "mae":
                    loss, _, _ = model(inputs, mask_ratio=params.mae.mask_ratio)
                else:
                    loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss.item()  # the reference logs every step
            done += 1
            if done == warmup + steps:
                break
    _sync(device)
    return Measurement(steps * batch_size / (time.perf_counter() - start), _peak_memory(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small models on the CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile our models")
    parser.add_argument("--workloads", default="mae,vit,cnn", help="comma-separated subset of mae,vit,cnn")
    parser.add_argument("--images", type=int, default=None, help="images in the cache (default by mode)")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results here, workload by workload"
    )
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        print("no CUDA device: running the --tiny CPU variant instead (GPU figures unmeasured)")
        args.tiny = True
    if args.tiny:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    batch = {"mae": 256, "vit": 128, "cnn": 128} if not args.tiny else {"mae": 32, "vit": 32, "cnn": 16}
    count = args.images or (8192 if not args.tiny else 128)
    epochs = 3 if not args.tiny else 2
    params = build_params(args.tiny, args.compile, log_every=2 if args.tiny else 8)
    reference_params = build_params(args.tiny, False, log_every=4)
    workers = 0 if args.tiny else args.workers
    device_name = torch.cuda.get_device_name() if not args.tiny else "CPU"
    print(
        f"device: {device_name}; torch {torch.__version__}; images {count} at {params.data.image_size} px; "
        f"compile={args.compile}"
    )

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        cache = write_uint8_cache(Path(scratch), count, params.data.image_size)
        paths = write_jpegs(Path(scratch), cache, min(count, 2048))
        for kind in args.workloads.split(","):
            ours = measure_ours(kind, params, cache, batch[kind], epochs)
            reference = measure_reference(
                kind, reference_params, paths, batch[kind], 20 if not args.tiny else 6, workers
            )
            results[kind] = {
                "ours_img_s": ours.images_per_second,
                "reference_img_s": reference.images_per_second,
                "ratio": ours.images_per_second / reference.images_per_second,
                "ours_peak_gib": ours.peak_memory_gib,
                "reference_peak_gib": reference.peak_memory_gib,
                "batch": batch[kind],
            }
            if args.json:  # after every workload: a run stopped at a time limit keeps what it measured
                args.json.write_text(
                    json.dumps({"device": device_name, "compile": args.compile, "results": results}, indent=2)
                )
            torch.cuda.empty_cache() if torch.cuda.is_available() else None

    names = {"mae": "MAE pretraining", "vit": "ViT fine-tuning", "cnn": "DenseNet-169"}
    print(f"\n{'workload':<18}{'ours img/s':>12}{'ref img/s':>12}{'ratio':>8}{'ours GiB':>10}{'ref GiB':>10}")
    for kind, row in results.items():
        gib = [
            f"{row[key]:.1f}" if row[key] is not None else "-"
            for key in ("ours_peak_gib", "reference_peak_gib")
        ]
        print(
            f"{names[kind]:<18}{row['ours_img_s']:>12.1f}{row['reference_img_s']:>12.1f}{row['ratio']:>7.2f}x"
            f"{gib[0]:>10}{gib[1]:>10}"
        )


if __name__ == "__main__":
    main()
