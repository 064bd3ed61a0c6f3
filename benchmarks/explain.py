"""Benchmark of Score-CAM: the batched implementation against grad-cam, and the CNN's channel reduction.

    python benchmarks/explain.py           # ViT-B/16 at 224 px (768 masked passes per image), CUDA if present
    python benchmarks/explain.py --tiny    # the tiny CPU ViT of params.yaml (64 px, patch 8, 96 channels)
    python benchmarks/explain.py --tiny --cnn-run models/baseline/binary/fold0 --ingest data/ingested

Part 1 (ViT) is described below. Part 2 (CNN): DenseNet-169's Score-CAM with every channel of its layer
against the top-k channels by spatial standard deviation (Faster Score-CAM), on the same images in the same
run: time per image of each, their ratio, and how far the reduced map is from the full one (mean and
largest absolute difference of the [0, 1] maps, Pearson correlation), for both weightings. Without
`--cnn-run` the DenseNet-169 is randomly initialised (timing is real, the map difference is only
indicative); with a trained run dir and `--ingest` it explains cached images of that data set.

Part 1 (ViT): the project's Score-CAM with grad-cam's conventions (softmax weighting, masks upsampled with
`align_corners=True`) and grad-cam's `ScoreCAM` explain the same images of the same randomly initialised
model for its predicted class, with the same masked-pass batch size. Prints images/s of each (on the
CPU: per CPU-second of this process, so other jobs on a shared box do not count), their ratio measured
in this run, and the largest difference between the two maps (fp32 on the CPU agrees to ~1e-4 even where
a random-init LayerNorm makes the map a small difference of large terms; bf16 autocast on CUDA differs
more, by design). grad-cam runs on at most `--gradcam-images` images, since it is the slow side.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch

from renalmae.explain.faithfulness import map_correlation
from renalmae.explain.layers import cnn_layer, vit_layer, vit_tokens_to_grid
from renalmae.explain.scorecam import cam_maps, channel_scores, explain


def _model(tiny: bool, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if tiny:
        kwargs = {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}
        name = "vit_tiny_patch16_224"
    else:
        kwargs, name = {"img_size": 224}, "vit_base_patch16_224"
    model = timm.create_model(name, pretrained=False, in_chans=1, num_classes=3, global_pool="avg", **kwargs)
    return model.to(device).eval()


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _clock(device: torch.device) -> float:
    """Wall time on CUDA; on the CPU this process's CPU time, so other jobs on a shared box do not count."""
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def _forward_only(model, images, channels: int, batch_size: int, precision: str) -> float:
    """Seconds of the masked passes' forward compute alone: images × channels inputs, batched."""
    device = images.device
    batch = images[:1].expand(batch_size, -1, -1, -1).contiguous()
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    total = len(images) * channels
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        model(batch)
        _synchronise(device)
        start = _clock(device)
        for _ in range(0, total, batch_size):
            model(batch)
        _synchronise(device)
    return _clock(device) - start


def _ours(model, images, batch_size: int, precision: str) -> tuple[np.ndarray, float]:
    device = images.device
    options = {
        "layer": vit_layer(model, align_corners=True),
        "weighting": "softmax",
    }  # grad-cam's conventions
    explain(model, images[:1], batch_size=batch_size, precision=precision, **options)  # warm-up
    _synchronise(device)
    start = _clock(device)
    result = explain(model, images, batch_size=batch_size, precision=precision, **options)
    _synchronise(device)
    return result.maps.float().cpu().numpy(), _clock(device) - start


def _gradcam(model, images, batch_size: int) -> tuple[np.ndarray, float]:
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    with torch.no_grad():
        predicted = model(images).argmax(dim=1).tolist()
    targets = [ClassifierOutputSoftmaxTarget(category) for category in predicted]
    to_grid = vit_tokens_to_grid(model)
    size = tuple(images.shape[-2:])
    with ScoreCAM(model, [model.blocks[-1].norm1], reshape_transform=lambda out: to_grid(out, size)) as cam:
        cam.batch_size = batch_size
        _synchronise(images.device)
        start = _clock(images.device)
        maps = cam(input_tensor=images, targets=targets)
        _synchronise(images.device)
    return maps, _clock(images.device) - start


def _cnn(args, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor]:
    """DenseNet-169 (trained run dir, or random at 64 / 224 px) and the images it explains (model input)."""
    from renalmae.models.preprocess import to_model_input

    if args.cnn_run:
        from renalmae.data.cache import load_ingested
        from renalmae.models.trained import load_trained_model

        model, _ = load_trained_model(args.cnn_run, device=device)
        if not args.ingest:
            raise SystemExit("--cnn-run needs --ingest (the ingest dir whose cached images it explains)")
        cached = load_ingested(args.ingest).images[: args.cnn_images]
        pixels = torch.as_tensor(np.asarray(cached))
    else:
        torch.manual_seed(0)
        model = timm.create_model("densenet169", pretrained=False, in_chans=1, num_classes=2)
        size = 64 if args.tiny else 224
        generator = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (args.cnn_images, size, size), generator=generator, dtype=torch.uint8)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    return model, to_model_input(pixels).to(device)


def _cnn_reduction(args, device: torch.device) -> None:
    """Full vs top-k channels of the CNN's layer: time per image, ratio, map difference, in this run."""
    model, images = _cnn(args, device)
    layer = cnn_layer(model, args.cnn_layer)
    options = {"layer": layer, "batch_size": args.batch_size or 64, "precision": args.precision,
               "channels_last": True}  # fmt: skip
    channel_scores(model, images[:1], channels=args.cnn_channels, **options)  # warm-up
    timed = {}
    for name, channels in (("full", 0), ("reduced", args.cnn_channels)):
        _synchronise(device)
        start = _clock(device)
        timed[name] = channel_scores(model, images, channels=channels, **options)
        _synchronise(device)
        timed[name + "_seconds"] = _clock(device) - start
    full, reduced = timed["full"], timed["reduced"]
    count = len(images)
    print(
        f"\nCNN {'trained ' + str(args.cnn_run) if args.cnn_run else 'DenseNet-169 (random init)'}, layer "
        f"{args.cnn_layer} ({full.grid[0]} x {full.grid[1]}), {count} images at {images.shape[-1]} px"
    )
    print(
        f"all {full.layer_channels} channels: {timed['full_seconds'] / count:.2f} s/image; top "
        f"{reduced.activations.shape[1]} by spatial std: {timed['reduced_seconds'] / count:.2f} s/image; "
        f"speed-up {timed['full_seconds'] / timed['reduced_seconds']:.1f} x"
    )
    targets = full.logits.argmax(dim=1)
    for weighting in ("score", "softmax"):
        full_maps, reduced_maps = cam_maps(full, targets, weighting), cam_maps(reduced, targets, weighting)
        difference = (full_maps - reduced_maps).abs().flatten(1)
        correlation = map_correlation(full_maps, reduced_maps)
        print(
            f"{weighting} weighting: reduced vs full map |diff| mean {float(difference.mean()):.3f}, "
            f"largest {float(difference.max()):.3f}; correlation median {np.nanmedian(correlation):.3f}, "
            f"lowest {np.nanmin(correlation):.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny ViT on the CPU (seconds)")
    parser.add_argument(
        "--images", type=int, default=None, help="images explained by the project's Score-CAM"
    )
    parser.add_argument("--gradcam-images", type=int, default=None, help="images explained by grad-cam")
    parser.add_argument("--batch-size", type=int, default=None, help="masked inputs per forward pass (both)")
    parser.add_argument(
        "--device", default=None, help="cpu | cuda (default: cuda when available, cpu with --tiny)"
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="ours only")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (spinning threads of an "
                        "oversubscribed box inflate CPU time)")  # fmt: skip
    parser.add_argument(
        "--cnn-layer", default=None, help="CNN layer (default: denseblock2 at 64 px, 3 at 224)"
    )
    parser.add_argument("--cnn-channels", type=int, default=64, help="top-k channels of the reduced CNN map")
    parser.add_argument(
        "--cnn-images", type=int, default=None, help="images the CNN explains (default 2 / 8)"
    )
    parser.add_argument("--cnn-run", default=None, help="a trained DenseNet run dir instead of a random one")
    parser.add_argument("--ingest", default=None, help="ingest dir whose cached images --cnn-run explains")
    args = parser.parse_args(argv)
    args.cnn_layer = args.cnn_layer or ("features.denseblock2" if args.tiny else "features.denseblock3")
    args.cnn_images = args.cnn_images or (2 if args.tiny else 8)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    images_count = args.images or (8 if args.tiny else 64)
    gradcam_count = min(args.gradcam_images or (4 if args.tiny else 8), images_count)
    batch_size = args.batch_size or (64 if args.tiny else 768)
    torch.set_float32_matmul_precision("high")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)

    model = _model(args.tiny, device)
    size = model.patch_embed.img_size[0]
    images = torch.rand(images_count, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    channels = model.embed_dim
    print(
        f"Score-CAM on {'tiny ViT' if args.tiny else 'ViT-B/16'} at {size} px, {channels} masked passes per "
        f"image, batch {batch_size}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    cap_seconds = _forward_only(model, images, channels, batch_size, args.precision)
    print(f"model forward passes alone (the cap): {images_count / cap_seconds:.2f} img/s")
    our_maps, our_seconds = _ours(model, images, batch_size, args.precision)
    ours_rate = images_count / our_seconds
    print(f"renalmae Score-CAM: {images_count} images in {our_seconds:.2f} s = {ours_rate:.2f} img/s")
    reference_maps, reference_seconds = _gradcam(model, images[:gradcam_count], batch_size)
    reference_rate = gradcam_count / reference_seconds
    print(
        f"grad-cam ScoreCAM: {gradcam_count} images in {reference_seconds:.2f} s = {reference_rate:.2f} img/s"
    )
    difference = float(np.abs(our_maps[:gradcam_count] - reference_maps).max())
    print(f"ratio renalmae / grad-cam: {ours_rate / reference_rate:.2f} x; max |map diff| {difference:.1e}")
    _cnn_reduction(args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
