"""Benchmark of Score-CAM: the project's batched implementation against the `grad-cam` library's ScoreCAM.

    python benchmarks/explain.py           # ViT-B/16 at 224 px (768 masked passes per image), CUDA if present
    python benchmarks/explain.py --tiny    # the tiny CPU ViT of params.yaml (64 px, patch 8, 96 channels)

Both explain the same images of the same randomly initialised model for its predicted class, with the
same masked-pass batch size. Prints images/s of each (on the CPU: per CPU-second of this process, so
other jobs on a shared box do not count), their ratio measured in this run, and the largest difference
between the two maps (fp32 on the CPU agrees to ~1e-4 even where a random-init LayerNorm makes the map a
small difference of large terms; bf16 autocast on CUDA differs more, by design). grad-cam runs on at
most `--gradcam-images` images, since it is the slow side.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch

from renalmae.explain.scorecam import explain, vit_layer, vit_tokens_to_grid


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
    explain(model, images[:1], layer=vit_layer(model), batch_size=batch_size, precision=precision)  # warm-up
    _synchronise(device)
    start = _clock(device)
    result = explain(model, images, layer=vit_layer(model), batch_size=batch_size, precision=precision)
    _synchronise(device)
    return result.maps.float().cpu().numpy(), _clock(device) - start


def _gradcam(model, images, batch_size: int) -> tuple[np.ndarray, float]:
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    with torch.no_grad():
        predicted = model(images).argmax(dim=1).tolist()
    targets = [ClassifierOutputSoftmaxTarget(category) for category in predicted]
    with ScoreCAM(model, [model.blocks[-1].norm1], reshape_transform=vit_tokens_to_grid(model)) as cam:
        cam.batch_size = batch_size
        _synchronise(images.device)
        start = _clock(images.device)
        maps = cam(input_tensor=images, targets=targets)
        _synchronise(images.device)
    return maps, _clock(images.device) - start


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
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    images_count = args.images or (8 if args.tiny else 64)
    gradcam_count = min(args.gradcam_images or (4 if args.tiny else 8), images_count)
    batch_size = args.batch_size or (64 if args.tiny else 768)
    torch.set_float32_matmul_precision("high")

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
