"""Why Score-CAM pointed below chance on the kidney frames: the maps' conventions, one change at a time.

    python benchmarks/kidney_explain.py --ingest DATA/ingested --splits DATA/splits.json \\
        --vit-run OUT/finetune/binary/fold0 --cnn-run OUT/baseline/binary/fold0
    python benchmarks/kidney_explain.py --tiny    # phantom and untrained tiny models: the code path only

On one seeded sample of holdout images with a lesion mask (`--images`, the explain step's own sample:
`renalmae.explain.selection.measured_images`), for the true class, it prints per model the pointing game
beside its chance level, the energy ratio vs uniform and the share of map peaks within 4 px of the border:

- `grad-cam`: the old conventions (softmax over channels, masks upsampled with `align_corners=True`; the
  old DenseNet layer `features.denseblock4`, all channels, on `--old-cnn-images` of the images since its
  1,664 masked passes per image are slow on a CPU);
- one change at a time: `+ patch-centre masks`, `+ score weighting`;
- the new defaults (the layers and channels of `--params`);
- `occlusion`: no Score-CAM at all. Each 8 × 8 patch of the image is set to the baseline in turn and the
  drop of the true class's probability is the map: where the model's evidence is, by construction;
- `mask occlusion`: no map either: the drop of the true class's probability when the (1-px dilated) lesion
  mask is set to the baseline, against the same mask shifted to 4 random places inside the image.

A model that uses the pelvis shows a larger drop for its mask than for the shifted copies and an
occlusion map that points at it; maps that then still miss it are wrong in their conventions.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from renalmae.data.cache import load_ingested
from renalmae.data.predictions import task_targets
from renalmae.data.splits import load_splits
from renalmae.explain.images import image_channel_scores
from renalmae.explain.layers import cnn_layer, is_vit, vit_layer
from renalmae.explain.localisation import localise
from renalmae.explain.scorecam import cam_maps, channel_scores
from renalmae.explain.selection import measured_images
from renalmae.models.preprocess import to_model_input
from renalmae.models.trained import load_trained_model
from renalmae.params import load_params

BORDER_PX = 4


def _report(name: str, maps: torch.Tensor, masks: np.ndarray, tolerance: int) -> None:
    maps = maps.cpu().numpy()
    located = [localise(cam, mask, tolerance) for cam, mask in zip(maps, masks, strict=True)]
    chance = np.mean([ndimage.binary_dilation(mask, iterations=tolerance).mean() for mask in masks])
    size = maps.shape[-1]
    peaks = [np.unravel_index(int(cam.argmax()), cam.shape) for cam in maps]
    near = np.mean([min(r, c, size - 1 - r, size - 1 - c) < BORDER_PX for r, c in peaks])
    hits = sum(item.pointing_game for item in located)
    ratio = np.mean([item.energy_ratio_vs_uniform for item in located])
    print(
        f"  {name:<34} pointing {int(hits):>3} / {len(located)} (chance {chance * len(located):5.1f}); "
        f"energy ratio {ratio:.2f}; peaks near border {near:.0%}"
    )


@torch.inference_mode()
def _occlusion(model, inputs: torch.Tensor, targets: torch.Tensor, patch: int = 8) -> torch.Tensor:
    """Drop of the target probability when each `patch` × `patch` cell is set to the baseline (0)."""
    size = inputs.shape[-1]
    cells = size // patch
    clean = model(inputs).softmax(-1).gather(1, targets[:, None])[:, 0]
    drops = torch.zeros(len(inputs), cells, cells)
    for row in range(cells):
        for column in range(cells):
            occluded = inputs.clone()
            occluded[..., row * patch : (row + 1) * patch, column * patch : (column + 1) * patch] = 0
            drops[:, row, column] = clean - model(occluded).softmax(-1).gather(1, targets[:, None])[:, 0]
    return torch.nn.functional.interpolate(drops[:, None], size=(size, size), mode="nearest")[:, 0]


@torch.inference_mode()
def _mask_occlusion(model, inputs, targets, masks: np.ndarray, rng: np.random.Generator, shifts: int = 4):
    """Mean probability drop for the dilated mask set to the baseline, and for shifted copies of it."""
    clean = model(inputs).softmax(-1).gather(1, targets[:, None])[:, 0]

    def drop(regions: np.ndarray) -> np.ndarray:
        keep = torch.as_tensor(~regions, dtype=inputs.dtype)[:, None]
        return (clean - model(inputs * keep).softmax(-1).gather(1, targets[:, None])[:, 0]).numpy()

    dilated = np.stack([ndimage.binary_dilation(mask, iterations=1) for mask in masks])
    own = drop(dilated)
    moved = []
    for _ in range(shifts):
        shifted = []
        for mask in dilated:
            rows, columns = np.nonzero(mask)
            dy = rng.integers(-rows.min(), mask.shape[0] - rows.max())
            dx = rng.integers(-columns.min(), mask.shape[1] - columns.max())
            shifted.append(np.roll(mask, (dy, dx), axis=(0, 1)))
        moved.append(drop(np.stack(shifted)))
    return own, np.mean(moved, axis=0)


def _tiny_inputs(root: Path):
    """A phantom ingest + split and two untrained tiny run dirs (the --tiny smoke run)."""
    from renalmae.models.factory import create_model, model_spec
    from renalmae.models.trained import save_trained_model
    from renalmae.params import params_from_dict
    from renalmae.steps import ingest, split, validate

    params = params_from_dict({
        "data": {"source": "phantom://renal?n=60&seed=0", "pool": [], "decode_workers": 0},
        "phantom": {"class_fractions": [0.34, 0.33, 0.33]}, "split": {"folds": [0, 1]},
        "encoder": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
        "baseline": {"arch": "resnet10t"}, "explain": {"cnn_layer": "layer2"}, "tracking": {"enabled": False},
    })  # fmt: skip
    ingest_dir = ingest.run(params, out_dir=root / "ingested")
    validate.run(params, ingest_dir=ingest_dir, report_dir=root / "validation")
    validation_dir = root / "validation"
    splits = split.run(
        params, ingest_dir=ingest_dir, validation_dir=validation_dir, out_path=root / "splits.json"
    )
    runs = {}
    for kind in ("vit", "cnn"):
        run_dir = root / kind
        info = {"model": kind, "task": "multiclass", "fold": 0, "classes": list(params.data.classes),
                "image_size": params.data.image_size}  # fmt: skip
        save_trained_model(run_dir, create_model(kind, params, 3), model_spec(kind, params, 3), info)
        runs[kind] = run_dir
    return params, Path(ingest_dir), Path(splits), runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="phantom + untrained tiny models (seconds)")
    parser.add_argument("--params", default="profiles/kidney-cpu.yaml")
    parser.add_argument("--ingest", type=Path)
    parser.add_argument("--splits", type=Path)
    parser.add_argument("--vit-run", type=Path)
    parser.add_argument("--cnn-run", type=Path)
    parser.add_argument("--images", type=int, default=200, help="holdout images with a mask (seeded sample)")
    parser.add_argument("--old-cnn-images", type=int, default=40, help="of those, for the old CNN layer")
    parser.add_argument("--old-vit-layer", default="blocks.-1.norm1", help="the ViT layer the issue measured")
    parser.add_argument("--old-cnn-layer", default="features.denseblock4", help="the CNN layer it measured")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            params, ingest_dir, splits_path, runs = _tiny_inputs(Path(scratch))
            args.images, args.old_cnn_images, args.old_cnn_layer = 6, 2, "layer4"
        else:
            params, ingest_dir, splits_path = load_params(args.params), args.ingest, args.splits
            runs = {kind: run for kind, run in (("vit", args.vit_run), ("cnn", args.cnn_run)) if run}
        _measure(params, ingest_dir, splits_path, runs, args)
    return 0


def _measure(params, ingest_dir: Path, splits_path: Path, runs: dict, args) -> None:
    data = load_ingested(ingest_dir)
    test = data.rows(load_splits(splits_path).test_ids)
    has_mask = np.asarray(data.masks[test["cache_index"].to_numpy()]).reshape(len(test), -1).any(axis=1)
    rows = measured_images(test, has_mask, args.images, params.explain.seed)
    images = np.asarray(data.images[rows["cache_index"].to_numpy()])
    masks = np.asarray(data.masks[rows["cache_index"].to_numpy()]).astype(bool)
    settings, tolerance = params.explain, params.explain.pointing_tolerance_px
    print(f"{len(rows)} holdout images with a lesion mask (seed {settings.seed}), true class explained")
    for run_dir in runs.values():
        model, info = load_trained_model(run_dir)
        task = info["task"]
        classes, negative = params.data.classes, params.data.negative_class
        targets = torch.as_tensor(task_targets(rows["label"], classes, negative, task))
        inputs = to_model_input(torch.as_tensor(images))
        print(f"\n{info['model']} ({run_dir}):")
        vit = is_vit(model)
        old_layer = args.old_vit_layer if vit else args.old_cnn_layer
        count = len(rows) if vit else min(args.old_cnn_images, len(rows))
        steps = {True: [("grad-cam", "softmax")],
                 False: [("+ patch-centre masks", "softmax"), ("+ score weighting", "score")]}  # fmt: skip
        for corners, named in steps.items():
            layer = (vit_layer if vit else cnn_layer)(model, old_layer, align_corners=corners)
            scores = channel_scores(model, inputs[:count], layer=layer, batch_size=settings.batch_size)
            for name, weighting in named:
                label = f"{name} ({old_layer}, {scores.grid[0]}x{scores.grid[1]}, {count} images)"
                _report(label, cam_maps(scores, targets[:count], weighting), masks[:count], tolerance)
        scores = image_channel_scores(model, images, settings)
        layer_name = settings.vit_layer if vit else settings.cnn_layer
        for weighting in ("score", "softmax"):
            label = f"new: {weighting} ({layer_name}, {scores.grid[0]}x{scores.grid[1]}, "
            label += f"k={scores.activations.shape[1]})"
            _report(label, cam_maps(scores, targets, weighting), masks, tolerance)
        model = model.to(memory_format=torch.contiguous_format)
        _report("occlusion (8x8 patches, no Score-CAM)", _occlusion(model, inputs, targets), masks, tolerance)
        own, moved = _mask_occlusion(model, inputs, targets, masks, np.random.default_rng(settings.seed))
        print(
            f"  mask occlusion: true-class probability drop {own.mean():+.3f} for the lesion mask, "
            f"{moved.mean():+.3f} for the same mask shifted elsewhere (mean of 4); larger for the mask on "
            f"{np.mean(own > moved):.0%} of images"
        )


if __name__ == "__main__":
    raise SystemExit(main())
