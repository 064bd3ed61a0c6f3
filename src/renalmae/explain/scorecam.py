"""Batched Score-CAM (Wang et al., 2020) for any classifier, with the paper's or grad-cam's channel weights.

Score-CAM weighs each channel of a target layer by how much the model believes in the target class when it
sees only the part of the input that channel highlights. In the paper's parts:

1. activations: one clean forward pass records the layer's activations `A` [B, K, h, w] (see
   `renalmae.explain.layers`) and the logits. With `channels=k` only each image's k channels of largest
   spatial standard deviation are kept (Faster Score-CAM: tabayashi0117, 2020,
   github.com/tabayashi0117/Score-CAM#faster-score-cam, as in tf-keras-vis `Scorecam(max_N=k)`);
2. masks: each channel is upsampled to the input size (bilinear, in the layer's geometry), min-max
   normalised to `H_k` in [0, 1] and multiplied with the input: `X ∘ H_k`;
3. scores: the masked inputs go through the model, B·k of them in batches of `batch_size`, on the model's
   device with no host synchronisation between batches; so does the baseline input `X_b = 0` (what an
   all-zero mask leaves). A class's score is its softmax probability (`class_score="softmax"`, grad-cam's
   `ClassifierOutputSoftmaxTarget`) or its logit (`"logit"`, grad-cam's `ClassifierOutputTarget`);
4. weights:
   - `weighting="score"`: the paper's channel-wise increase of confidence, `α_k = f_c(X ∘ H_k) − f_c(X_b)`
     (Wang et al. 2020, Definition 2), used as the weight: a channel that reveals evidence against the
     class gets a negative weight;
   - `weighting="softmax"`: the `grad-cam` library's `ScoreCAM`, `α = softmax_k(f_c(X ∘ H_k))`. With
     probability scores in [0, 1] no two weights differ by more than a factor e, so these maps are close
     to the plain channel mean and barely class-specific;
5. map: `ReLU(Σ_k α_k A_k)` at the layer's resolution, min-max scaled, upsampled bilinearly with
   half-pixel centres (as cv2.resize, and each cell on its patch centre) to the input size and min-max
   scaled again to [0, 1].

The masked passes depend neither on the class nor on the weighting: `channel_scores` runs them once and
`cam_maps` turns them into the map of any class under either weighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from renalmae.errors import ModelError
from renalmae.explain.layers import CamLayer, default_layer

ClassScore = Literal["softmax", "logit"]
Weighting = Literal["score", "softmax"]
Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class ChannelScores:
    """What Score-CAM measures on a batch of images; the map of any class and weighting follows from it."""

    activations: torch.Tensor  # [B, k, h, w] fp32: the channels used
    channel_index: torch.Tensor  # [B, k] which of the layer's channels they are
    masked_logits: torch.Tensor  # [B, k, classes] fp32: model output on X ∘ H_k
    baseline_logits: torch.Tensor  # [classes] fp32: model output on the baseline input X_b = 0
    logits: torch.Tensor  # [B, classes] fp32: model output on X
    layer_channels: int  # K, the layer's channel count before any reduction
    input_size: tuple[int, int]  # (H, W)

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.activations.shape[-2]), int(self.activations.shape[-1])

    @property
    def probabilities(self) -> torch.Tensor:
        return self.logits.softmax(dim=-1)


@dataclass(frozen=True)
class CamResult:
    """Score-CAM maps [B, H, W] in [0, 1], the explained class per image and the clean-input probabilities."""

    maps: torch.Tensor
    targets: torch.Tensor
    probabilities: torch.Tensor
    grid: tuple[int, int]
    channels: int  # channels weighed per image (k)
    layer_channels: int  # channels of the layer (K)


def _record(model: nn.Module, layer: CamLayer, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One clean forward pass: (activations [B, K, h, w] in fp32, logits [B, classes] in fp32)."""
    captured: list[list[torch.Tensor]] = [[] for _ in layer.modules]
    handles = [
        module.register_forward_hook(lambda _m, _i, output, store=store: store.append(output))
        for module, store in zip(layer.modules, captured, strict=True)
    ]
    try:
        logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    if not all(captured):
        raise ModelError(
            f"layer '{layer.path}' was not used by the model's forward pass; choose another layer"
        )
    activations = layer.activations([store[0] for store in captured], tuple(images.shape[-2:]))
    return activations, logits.float()


def top_channels(activations: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's `count` channels of largest spatial standard deviation (all when `count` is 0 or ≥ K).

    Returns (activations [B, k, h, w], channel indices [B, k]); Faster Score-CAM's channel reduction.
    """
    batch, channels = activations.shape[:2]
    if count <= 0 or count >= channels:
        index = torch.arange(channels, device=activations.device).expand(batch, channels)
        return activations, index
    spread = activations.flatten(2).std(dim=-1, correction=0)
    index = spread.topk(count, dim=1).indices.sort(dim=1).values
    return activations.gather(1, index[:, :, None, None].expand(-1, -1, *activations.shape[2:])), index


def minmax(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """grad-cam's `scale_cam_image` scaling of each map [.., H, W]: (x - min) / (max - min + eps)."""
    flat = maps.flatten(-2)
    shifted = flat - flat.min(dim=-1, keepdim=True).values
    return (shifted / (eps + shifted.max(dim=-1, keepdim=True).values)).view_as(maps)


def autocast(device: torch.device, precision: Precision):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)


def channel_scores(
    model: nn.Module,
    images: torch.Tensor,
    *,
    layer: CamLayer | None = None,
    channels: int = 0,
    batch_size: int = 64,
    precision: Precision = "auto",
    channels_last: bool = False,
    progress: bool = False,
) -> ChannelScores:
    """Steps 1-3 of Score-CAM for `images` [B, C, H, W] (float, model input), on the model's device.

    `channels`: weigh only each image's top-k channels by spatial standard deviation (0 = all K).
    `batch_size` counts masked inputs per forward pass. The model is put in eval mode.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    model.eval()
    device = next(model.parameters()).device
    layer = layer or default_layer(model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device=device, dtype=torch.float32).contiguous(memory_format=memory_format)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    with torch.inference_mode(), autocast(device, precision):
        activations, logits = _record(model, layer, images)
        layer_channels = activations.shape[1]
        activations, channel_index = top_channels(activations, channels)
        baseline_logits = model(torch.zeros_like(images[:1])).float()[0]
        count, kept = activations.shape[:2]
        total = count * kept
        masked_logits = torch.empty(total, logits.shape[1], device=device, dtype=torch.float32)
        starts = range(0, total, batch_size)
        for start in tqdm(starts, desc="Score-CAM", unit="batch", disable=not progress, leave=False):
            pair = torch.arange(start, min(start + batch_size, total), device=device)
            image_index, channel = pair // kept, pair % kept
            masks = minmax(layer.upsample(activations[image_index, channel][:, None], size), eps=1e-8)
            masked = (images[image_index] * masks).contiguous(memory_format=memory_format)
            masked_logits[start : start + pair.numel()] = model(masked).float()
    return ChannelScores(
        activations=activations,
        channel_index=channel_index,
        masked_logits=masked_logits.view(count, kept, -1),
        baseline_logits=baseline_logits,
        logits=logits,
        layer_channels=layer_channels,
        input_size=size,
    )


def _class_score(logits: torch.Tensor, targets: torch.Tensor, class_score: ClassScore) -> torch.Tensor:
    """The target class's score in `logits` [..., classes]; `targets` broadcast over the leading dims."""
    values = logits.softmax(dim=-1) if class_score == "softmax" else logits
    return values.gather(-1, targets.expand(*values.shape[:-1])[..., None])[..., 0]


def channel_weights(
    scores: ChannelScores,
    targets: torch.Tensor,
    weighting: Weighting = "score",
    class_score: ClassScore = "softmax",
) -> torch.Tensor:
    """Step 4: the weight of each used channel [B, k] for the class `targets` [B] of each image."""
    targets = targets.to(scores.logits.device)
    masked = _class_score(scores.masked_logits, targets[:, None], class_score)
    if weighting == "softmax":
        return masked.softmax(dim=1)
    if weighting == "score":
        baseline = _class_score(scores.baseline_logits.expand(len(targets), -1), targets, class_score)
        return masked - baseline[:, None]
    raise ValueError(f"weighting must be 'score' or 'softmax', got {weighting!r}")


def cam_maps(
    scores: ChannelScores,
    targets: torch.Tensor,
    weighting: Weighting = "score",
    class_score: ClassScore = "softmax",
) -> torch.Tensor:
    """Steps 4-5: Score-CAM maps [B, H, W] in [0, 1] of the class `targets` [B] of each image.

    A map whose weighted sum is nowhere positive (no channel adds evidence) is all zeros.
    """
    weights = channel_weights(scores, targets, weighting, class_score)
    cams = torch.einsum("bk,bkhw->bhw", weights, scores.activations).clamp_min(0)
    cams = minmax(cams, eps=1e-7)
    cams = torch.nn.functional.interpolate(
        cams[:, None], size=scores.input_size, mode="bilinear", align_corners=False
    )[:, 0]
    return minmax(cams.clamp_min(0), eps=1e-7)


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int] | None = None,
    *,
    weighting: Weighting = "score",
    class_score: ClassScore = "softmax",
    layer: CamLayer | None = None,
    channels: int = 0,
    batch_size: int = 64,
    precision: Precision = "auto",
    channels_last: bool = False,
    progress: bool = False,
) -> CamResult:
    """Score-CAM maps of `images` [B, C, H, W] (float, model input) for `targets` (default: predicted)."""
    scores = channel_scores(
        model, images, layer=layer, channels=channels, batch_size=batch_size, precision=precision,
        channels_last=channels_last, progress=progress,
    )  # fmt: skip
    return cam_result(scores, targets, weighting, class_score)


def cam_result(
    scores: ChannelScores,
    targets: torch.Tensor | list[int] | None,
    weighting: Weighting = "score",
    class_score: ClassScore = "softmax",
) -> CamResult:
    """The maps of `scores` (B images' masked passes) for `targets` [B] (array-like; None: predicted)."""
    if targets is None:
        targets = scores.logits.argmax(dim=-1)
    logits = scores.logits
    targets = torch.as_tensor(targets, device=logits.device, dtype=torch.long).reshape(len(logits))
    return CamResult(
        maps=cam_maps(scores, targets, weighting, class_score),
        targets=targets,
        probabilities=scores.probabilities,
        grid=scores.grid,
        channels=int(scores.activations.shape[1]),
        layer_channels=scores.layer_channels,
    )


def score_cam(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | list[int] | None = None,
    **options,
) -> torch.Tensor:
    """Score-CAM maps [B, H, W] in [0, 1] of `images` [B, C, H, W]; see `explain` for the options."""
    return explain(model, images, targets, **options).maps
