"""Checkpoint loading: published or project weights onto our models, exactly or not at all, with a report.

`load_init_checkpoint` reads a local `.pth` / `.pt` / `.bin` (a state dict, or one under `model` /
`state_dict`) or `.safetensors` file: a facebookresearch/mae checkpoint (`{"model": state_dict}` of
`mae_vit_base_patch16_dec512d8b`), a USF-MAE checkpoint (a bare state dict of the same model), a timm
DenseNet checkpoint, or one of ours. Then:

- **Layouts.** Wrapper prefixes (`module.`, `_orig_mod.`, `model.`, `backbone.`, `encoder.`) are stripped
  on both sides, so MAE keys (timm ViT names) land on `MaskedAutoencoderViT.encoder` or on a ViT
  classifier. Separate `q_bias` / `v_bias` (BEiT, data2vec and the MAE ports built on their code) become
  `qkv.bias` with the zero key bias those models use: exact.
- **Input normalisation.** A 3-channel first layer was trained on RGB-replicated greyscale normalised with
  the checkpoint's mean / std (ImageNet's for MAE, USF-MAE and timm's DenseNet). `fold_input_normalisation`
  rewrites it for our 1-channel input `(p - GREY_MEAN) / GREY_STD`, so the first layer's output equals the
  reference's on the same image: exact for a patch embedding (stride = kernel, no padding), exact away from
  the zero-padded border for a padded convolution (see `fold_input_normalisation`). An MAE pixel predictor
  trained without per-patch normalisation (USF-MAE) is folded the same way (`fold_pixel_predictor`).
- **Grid.** Absolute position embeddings are resampled to our grid (timm `resample_abs_pos_embed`).
- **Refusal rule.** Every tensor of the model's encoder (or CNN backbone) must come from the checkpoint and
  every checkpoint tensor must find its place, except the replaceable parts, which the report lists: a
  classifier head (kept at init, or re-initialised when its shape differs), the MAE decoder with its pixel
  predictor (`decoder_*`, `mask_token`) and BatchNorm `num_batches_tracked` counters. Anything else (another
  size or architecture, a fine-tuned ViT's post-pooling `fc_norm`, layer scale, relative position bias) is
  refused with a `ModelError` naming the file and the tensors.

`encoder_state_dict` / `load_encoder_into_vit` are the pretrain → finetune hand-off.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.data import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_INCEPTION_MEAN,
    IMAGENET_INCEPTION_STD,
)
from timm.layers import resample_abs_pos_embed
from torch import Tensor, nn

from renalmae.errors import ModelError
from renalmae.models.preprocess import GREY_MEAN, GREY_STD
from renalmae.train.checkpoint import weights_only_globals

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.")
HEAD_NAMES = ("head", "head.fc", "fc", "classifier")
DECODER_PATTERN = re.compile(r"^(decoder[_.]|mask_token$)")
INPUT_NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    "inception": (IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD),
}
"""Per-channel mean / std a checkpoint's training input was normalised with (timm's constants)."""
_QV_BIAS = re.compile(r"^(?P<block>.+\.attn)\.(?P<part>q_bias|v_bias)$")


@dataclass
class LoadReport:
    """What a checkpoint load did: what loaded, what was transformed, and the replaceable parts left out."""

    source: str
    loaded: int
    total: int
    missing: list[str] = field(default_factory=list)
    """Replaceable model keys absent from the checkpoint (a new head, an MAE decoder): kept at init."""
    unexpected: list[str] = field(default_factory=list)
    """Replaceable checkpoint keys the model has no place for (an MAE decoder when fine-tuning): ignored."""
    adapted: list[str] = field(default_factory=list)
    """Loaded after an exact transformation, e.g. the 3→1-channel fold of `patch_embed.proj.weight`."""
    reinitialised: list[str] = field(default_factory=list)
    """Head / pixel-predictor keys whose checkpoint shape differs (other classes / channels): kept at init."""

    def __str__(self) -> str:
        lines = [f"loaded {self.loaded}/{self.total} tensors from {self.source}"]
        for title, keys in (
            ("adapted", self.adapted),
            ("re-initialised (head shape differs)", self.reinitialised),
            (_missing_title(self.missing), self.missing),
            ("not used (replaceable parts)", self.unexpected),
        ):
            if keys:
                lines.append(f"  {title}: {', '.join(summarise_keys(keys))}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "total": self.total,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "adapted": self.adapted,
            "reinitialised": self.reinitialised,
        }


def load_init_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    param_key: str = "pretrain.init_checkpoint",
    normalisation: str = "imagenet",
) -> LoadReport:
    """Load a published / local checkpoint into `model` (in place) and report what was loaded.

    `normalisation` names the per-channel mean / std the checkpoint's 3-channel input was normalised with
    (`INPUT_NORMALISATIONS`); it is folded into our 1-channel first layer. Raises `ModelError` for a missing
    or unreadable file and for a checkpoint that breaks the refusal rule (module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found; set {param_key} to an existing local file or null")
    if normalisation not in INPUT_NORMALISATIONS:
        raise ModelError(
            f"unknown input normalisation '{normalisation}' for {param_key}; "
            f"use one of {', '.join(INPUT_NORMALISATIONS)}"
        )
    return load_state_into(
        model, read_state_dict(path), source=f"checkpoint {path}", normalisation=normalisation
    )


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, unwrapped from `model` / `state_dict` containers."""
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ModelError(
                f"cannot read checkpoint {path} as safetensors ({error}); is the file complete?"
            ) from None
    try:
        # training checkpoints also hold their saved args (argparse Namespace, numpy scalars); allow those,
        # never arbitrary code
        with torch.serialization.safe_globals(weights_only_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if isinstance(error, pickle.UnpicklingError) and "Unsupported global" in str(error):
            raise ModelError(_refused_globals(path)) from None
        raise ModelError(
            f"cannot read checkpoint {path} as a torch file ({type(error).__name__}: {error}); is the file "
            "complete? Convert it to .safetensors or a plain state dict"
        ) from None
    for container in ("model", "state_dict", "model_state_dict", "module"):
        if isinstance(payload, dict) and isinstance(payload.get(container), dict):
            payload = payload[container]
            break
    tensors = (
        {key: value for key, value in payload.items() if isinstance(value, Tensor)}
        if isinstance(payload, dict)
        else {}
    )
    if not tensors:
        raise ModelError(f"checkpoint {path} holds no tensors (expected a state dict, or one under 'model')")
    return tensors


def _refused_globals(path: Path) -> str:
    """The message for a checkpoint the weights-only loader refuses: every Python global it would need."""
    try:
        allowed = {
            item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}"
            for item in weights_only_globals()
        }
        refused = [
            name for name in torch.serialization.get_unsafe_globals_in_checkpoint(path) if name not in allowed
        ]
    except Exception:  # a file too damaged to list its globals
        refused = []
    what = (
        f"Python objects a weights-only load refuses ({', '.join(refused)})" if refused else "Python objects"
    )
    return (
        f"checkpoint {path} holds {what}: loading them could run code, so it is not loaded. Save only the "
        "weights where the file was made (`torch.save(model.state_dict(), path)`, or safetensors' "
        "`save_file(model.state_dict(), path)`) and point the setting at that file"
    )


def encoder_state_dict(mae: nn.Module) -> dict[str, Tensor]:
    """The MAE encoder's weights under timm ViT key names (CPU, detached): the fine-tuning init."""
    mae = getattr(mae, "_orig_mod", mae)
    return {key: value.detach().cpu().clone() for key, value in mae.encoder.state_dict().items()}


def load_encoder_into_vit(vit: nn.Module, encoder_state: dict[str, Tensor]) -> LoadReport:
    """Load a pretrained encoder into a ViT classifier; the new `head` is expected to be missing."""
    return load_state_into(vit, encoder_state, source="pretrained encoder")


def fold_input_normalisation(
    weight: Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Tensor, Tensor]:
    """A 3-channel first layer's weights `[O, 3, k, k]` → our 1-channel weights `[O, 1, k, k]`, offset `[O]`.

    The reference sees grey level p (0..1) replicated to RGB as `r_c = (p - mean_c) / std_c`; we feed
    `x = (p - GREY_MEAN) / GREY_STD`. Since `Σ_c W_c r_c = W' x + offset` with
    `W' = GREY_STD Σ_c W_c / std_c` and `offset = Σ_{c,i,j} W_c[i, j] (GREY_MEAN - mean_c) / std_c`,
    adding the offset to the layer's bias makes every output equal the reference's.

    Zero padding breaks this at the border: where the kernel reads padding, the reference reads 0 in its
    units (grey level mean_c, a different grey per channel) and we read 0 in ours (GREY_MEAN), so a border
    output is off by the offset share of the padded taps, `Σ_padded taps Σ_c W_c (GREY_MEAN - mean_c) /
    std_c` (times the scale of a BatchNorm that follows). No 1-channel fold can repair that; it vanishes
    when `mean_c = GREY_MEAN` (timm's inception constants).
    """
    if weight.ndim != 4 or weight.shape[1] != 3 or len(mean) != 3 or len(std) != 3:
        raise ModelError(f"can only fold a 3-channel first layer, got weights {tuple(weight.shape)}")
    scaled = weight.double() / torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    folded = scaled.sum(dim=1, keepdim=True) * GREY_STD
    shift = torch.tensor([GREY_MEAN - m for m in mean], dtype=torch.float64).view(1, 3, 1, 1)
    offset = (scaled * shift).sum(dim=(1, 2, 3))
    return folded.to(weight.dtype), offset


def load_state_into(
    model: nn.Module, state: dict[str, Tensor], source: str, normalisation: str | None = None
) -> LoadReport:
    """Match, adapt and load `state` into `model` under the refusal rule (module docstring)."""
    model = getattr(model, "_orig_mod", model)
    target = model.state_dict()
    by_canonical = {_canonical(key): key for key in target}
    state, adapted = _map_layout({_canonical(key): value for key, value in state.items()}, by_canonical)
    _refuse_post_pooling_norm(state, by_canonical, source)
    report = LoadReport(source=source, loaded=0, total=len(target), adapted=adapted)
    if normalisation is not None:
        _fold_first_layer(model, state, by_canonical, INPUT_NORMALISATIONS[normalisation], source, report)
        _fold_pixel_predictor(model, state, by_canonical, INPUT_NORMALISATIONS[normalisation], report)
    replaceable = _replaceable_keys(model, target)
    matched: dict[str, Tensor] = {}
    mismatched: list[str] = []
    unplaced: list[str] = []
    for key, value in state.items():
        target_key = by_canonical.get(key)
        if target_key is None:
            (report.unexpected if _is_replaceable(key, set()) else unplaced).append(key)
            continue
        expected = target[target_key]
        if value.shape == expected.shape:
            matched[target_key] = value.to(expected.dtype)
            continue
        resampled = _resample_pos_embed(target_key, value, expected)
        if resampled is not None:
            matched[target_key] = resampled
            report.adapted.append(f"{target_key}: {tuple(value.shape)}→{tuple(expected.shape)}")
        elif target_key in replaceable:
            report.reinitialised.append(target_key)
        else:
            mismatched.append(
                f"{target_key} checkpoint {tuple(value.shape)} vs model {tuple(expected.shape)}"
            )
    if mismatched:
        raise ModelError(
            f"{source} does not fit this model (another architecture or size? make encoder.* / "
            f"baseline.arch match it): {len(mismatched)} shape mismatches, first: {'; '.join(mismatched[:5])}"
        )
    absent = [key for key in target if key not in matched and key not in replaceable]
    if absent or unplaced:
        parts = []
        if absent:
            parts.append(f"it lacks {len(absent)} model tensors ({', '.join(summarise_keys(absent, 6))})")
        if unplaced:
            parts.append(
                f"{len(unplaced)} of its tensors have no place in this model "
                f"({', '.join(summarise_keys(unplaced, 6))})"
            )
        raise ModelError(
            f"{source} does not fit this model: {'; '.join(parts)}. Only a classifier head, the MAE decoder "
            "and BatchNorm counters may be left out; use a checkpoint of the same architecture and size "
            "(encoder.* / baseline.arch), in a layout listed in renalmae.models.checkpoints"
        )
    report.loaded = len(matched)
    result = model.load_state_dict(matched, strict=False)
    report.missing = list(result.missing_keys)
    return report


def summarise_keys(keys: list[str], limit: int = 12) -> list[str]:
    """Group keys by their first component (`decoder_blocks.* (24)`) so a report stays readable."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split(".")[0], []).append(key)
    lines = [
        members[0] if len(members) == 1 else f"{prefix}.* ({len(members)})"
        for prefix, members in groups.items()
    ]
    return lines[:limit] + ([f"... {len(lines) - limit} more groups"] if len(lines) > limit else [])


def _missing_title(missing: list[str]) -> str:
    if missing and all(_canonical(key).rsplit(".", 1)[0] in HEAD_NAMES for key in missing):
        return "missing (kept at init; the new classifier head, as expected)"
    return "missing (kept at init)"


def _canonical(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _map_layout(
    state: dict[str, Tensor], by_canonical: dict[str, str]
) -> tuple[dict[str, Tensor], list[str]]:
    """Rename / merge tensors of other ViT layouts into timm names; return the new state and the changes."""
    mapped: dict[str, Tensor] = {}
    split_biases: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        match = _QV_BIAS.match(key)
        if match and f"{match['block']}.qkv.bias" in by_canonical:
            split_biases.setdefault(match["block"], {})[match["part"]] = value
        else:
            mapped[key] = value
    adapted = []
    for block, parts in split_biases.items():
        if set(parts) != {"q_bias", "v_bias"} or f"{block}.qkv.bias" in state:
            mapped.update({f"{block}.{part}": value for part, value in parts.items()})  # refused later
            continue
        query, value = parts["q_bias"], parts["v_bias"]
        mapped[f"{block}.qkv.bias"] = torch.cat([query, torch.zeros_like(query), value])
    if split_biases:
        adapted.append(f"{len(split_biases)} × attn.q_bias + attn.v_bias → attn.qkv.bias (zero key bias)")
    return mapped, adapted


def _refuse_post_pooling_norm(state: dict[str, Tensor], by_canonical: dict[str, str], source: str) -> None:
    if "fc_norm.weight" in state and "fc_norm.weight" not in by_canonical:
        raise ModelError(
            f"{source} is a fine-tuned ViT: its `fc_norm` normalises the pooled feature, while this encoder "
            "normalises every token (`norm`) before pooling, so it cannot be loaded exactly; start from the "
            "pretraining checkpoint instead (e.g. mae_pretrain_vit_base.pth or the USF-MAE checkpoint)"
        )


def _replaceable_keys(model: nn.Module, target: dict[str, Tensor]) -> set[str]:
    names = set(HEAD_NAMES)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    if isinstance(classifier, str):
        names.add(classifier)
    return {key for key in target if _is_replaceable(_canonical(key), names)}


def _is_replaceable(canonical: str, extra_heads: set[str]) -> bool:
    module = canonical.rsplit(".", 1)[0]
    return (
        module in HEAD_NAMES
        or module in extra_heads
        or bool(DECODER_PATTERN.match(canonical))
        or canonical.endswith("num_batches_tracked")
    )


def _fold_first_layer(
    model: nn.Module,
    state: dict[str, Tensor],
    by_canonical: dict[str, str],
    normalisation: tuple[tuple[float, ...], tuple[float, ...]],
    source: str,
    report: LoadReport,
) -> None:
    """Replace a 3-channel first conv in `state` by its 1-channel fold; put the offset where it belongs."""
    target = model.state_dict()
    for key, value in list(state.items()):
        target_key = by_canonical.get(key)
        if target_key is None or value.ndim != 4 or not target_key.endswith(".weight"):
            continue
        expected = target[target_key]
        if not (value.shape[1] == 3 and expected.shape[1] == 1 and value.shape[0] == expected.shape[0]):
            continue
        folded, offset = fold_input_normalisation(value, *normalisation)
        state[key] = folded
        conv = key.removesuffix(".weight")
        report.adapted.append(
            f"{target_key}: {tuple(value.shape)}→{tuple(expected.shape)} "
            f"(RGB-replicated greyscale, {_describe(normalisation)} normalisation folded in)"
        )
        if f"{conv}.bias" in by_canonical:
            bias = state.get(f"{conv}.bias")
            if bias is None:
                raise ModelError(f"{source} has {key} but no {conv}.bias; it does not fit this model")
            state[f"{conv}.bias"] = (bias.double() + offset).to(bias.dtype)
            report.adapted.append(f"{by_canonical[conv + '.bias']}: + normalisation offset")
            continue
        norm = _following_batch_norm(model, target_key.removesuffix(".weight"))
        norm_key = None if norm is None else _canonical(f"{norm}.running_mean")
        if norm_key is None or norm_key not in state:
            raise ModelError(
                f"cannot fold the input normalisation of {source} into {target_key}: the convolution has no "
                "bias and no BatchNorm (with running statistics in the checkpoint) right after it"
            )
        running_mean = state[norm_key]
        state[norm_key] = (running_mean.double() - offset).to(running_mean.dtype)
        report.adapted.append(f"{norm}.running_mean: - normalisation offset")


def fold_pixel_predictor(
    weight: Tensor, bias: Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Tensor, Tensor]:
    """An RGB MAE pixel predictor `[p·p·3, D]` (MAE's patch layout: channel fastest) → ours `[p·p, D]`.

    Without per-patch normalisation (`norm_pix_loss` false) the reference predicts `r_c = (p - mean_c) /
    std_c` for each channel; ours predicts `x = (p - GREY_MEAN) / GREY_STD`. Each channel's prediction
    rewritten in our units is `(std_c r_c + mean_c - GREY_MEAN) / GREY_STD`; the folded layer predicts
    their mean, exactly (a linear map of the same decoder features)."""
    std_ = torch.tensor(std, dtype=torch.float64)
    shift = torch.tensor([m - GREY_MEAN for m in mean], dtype=torch.float64)
    rgb_weight = weight.double().view(-1, 3, weight.shape[-1])
    rgb_bias = bias.double().view(-1, 3)
    folded_weight = (rgb_weight * std_.view(1, 3, 1)).mean(dim=1) / GREY_STD
    folded_bias = (rgb_bias * std_ + shift).mean(dim=1) / GREY_STD
    return folded_weight.to(weight.dtype), folded_bias.to(bias.dtype)


def _fold_pixel_predictor(
    model: nn.Module,
    state: dict[str, Tensor],
    by_canonical: dict[str, str],
    normalisation: tuple[tuple[float, ...], tuple[float, ...]],
    report: LoadReport,
) -> None:
    """Fold a 3-channel MAE `decoder_pred` into ours when both predict plain (not per-patch normalised)
    pixels; with `norm_pix_loss` the targets differ by more than an affine map and it is re-initialised."""
    if getattr(model, "norm_pix_loss", True) or "decoder_pred.weight" not in by_canonical:
        return
    weight, bias = state.get("decoder_pred.weight"), state.get("decoder_pred.bias")
    expected = model.state_dict()[by_canonical["decoder_pred.weight"]]
    if weight is None or bias is None or weight.shape != (3 * expected.shape[0], expected.shape[1]):
        return
    state["decoder_pred.weight"], state["decoder_pred.bias"] = fold_pixel_predictor(
        weight, bias, *normalisation
    )
    report.adapted.append(
        f"decoder_pred: {tuple(weight.shape)}→{tuple(expected.shape)} (RGB pixel prediction as grey, "
        f"{_describe(normalisation)} normalisation folded in)"
    )


def _following_batch_norm(model: nn.Module, conv_name: str) -> str | None:
    """Name of the module right after `conv_name` that holds parameters, if it is a matching BatchNorm."""
    modules = list(model.named_modules())
    names = [name for name, _ in modules]
    if conv_name not in names:
        return None
    conv = modules[names.index(conv_name)][1]
    for name, module in modules[names.index(conv_name) + 1 :]:
        if not list(module.parameters(recurse=False)) and not list(module.buffers(recurse=False)):
            continue
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        return name if is_norm and module.num_features == conv.out_channels else None
    return None


def _describe(normalisation: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    return next((name for name, values in INPUT_NORMALISATIONS.items() if values == normalisation), "given")


def _resample_pos_embed(key: str, value: Tensor, expected: Tensor) -> Tensor | None:
    """An absolute position table `[1, 1 + g², D]` resampled to the model's grid, or None."""
    if not key.endswith("pos_embed") or value.ndim != 3 or value.shape[0] != 1:
        return None
    if value.shape[-1] != expected.shape[-1]:
        return None
    grid, source_grid = (int(round((table.shape[1] - 1) ** 0.5)) for table in (expected, value))
    if grid * grid + 1 != expected.shape[1] or source_grid * source_grid + 1 != value.shape[1]:
        return None
    return resample_abs_pos_embed(value, new_size=[grid, grid], num_prefix_tokens=1).to(expected.dtype)
