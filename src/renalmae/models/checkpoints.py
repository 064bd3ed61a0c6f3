"""Checkpoint loading: published or project weights onto our models, with a report of what happened.

`load_init_checkpoint` takes a local `.pth` / `.pt` / `.bin` (a dict holding `model` or `state_dict`,
or a plain state dict) or `.safetensors` file, e.g. a published MAE `mae_pretrain_vit_base.pth`, a
USF-MAE checkpoint or a timm DenseNet checkpoint, and:

- strips wrapper prefixes (`module.`, `_orig_mod.`, `model.`, `backbone.`, `encoder.`) on both sides,
  so MAE checkpoint keys (timm-compatible) land on `MaskedAutoencoderViT.encoder` or on a ViT classifier;
- adapts a 3-channel first convolution to our 1-channel input by summing over input channels
  (timm `adapt_input_conv`), and resamples absolute position embeddings to our grid
  (timm `resample_abs_pos_embed`); both are listed in `LoadReport.adapted`;
- drops a classifier / pixel-prediction head whose shape differs (another class count or channel
  count): listed in `LoadReport.reinitialised`;
- refuses (`ModelError` naming the file and the first mismatches) a checkpoint whose other shapes do not
  fit (another architecture or size), or that would load fewer than half of the model's tensors.

`encoder_state_dict` / `load_encoder_into_vit` are the pretrain → finetune hand-off.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv
from torch import Tensor, nn

from renalmae.errors import ModelError

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.")
HEAD_NAMES = ("head", "head.fc", "fc", "classifier", "decoder_pred")
MIN_LOADED_FRACTION = 0.5


@dataclass
class LoadReport:
    """What a checkpoint load did: keys the model kept at init, keys ignored, tensors transformed."""

    source: str
    loaded: int
    total: int
    missing: list[str] = field(default_factory=list)
    """Model keys not in the checkpoint: they keep their fresh initialisation."""
    unexpected: list[str] = field(default_factory=list)
    """Checkpoint keys the model has no place for (e.g. an MAE decoder when fine-tuning): ignored."""
    adapted: list[str] = field(default_factory=list)
    """Loaded after a transformation, e.g. `patch_embed.proj.weight: 3→1 input channels`."""
    reinitialised: list[str] = field(default_factory=list)
    """Head keys whose checkpoint shape differs (other classes / channels): kept at init."""

    def __str__(self) -> str:
        lines = [f"loaded {self.loaded}/{self.total} tensors from {self.source}"]
        for title, keys in (
            ("adapted", self.adapted),
            ("re-initialised (head shape differs)", self.reinitialised),
            (_missing_title(self.missing), self.missing),
            ("unexpected (ignored)", self.unexpected),
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
    model: nn.Module, path: str | os.PathLike, param_key: str = "pretrain.init_checkpoint"
) -> LoadReport:
    """Load a published / local checkpoint into `model` (in place) and report what was loaded."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} not found; set {param_key} to an existing local file or null")
    return load_state_into(model, read_state_dict(path), source=f"checkpoint {path}")


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
        # MAE training checkpoints also hold their argparse Namespace; allow just that, never arbitrary code.
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(
            f"cannot read checkpoint {path} as a weights-only torch file ({type(error).__name__}: "
            f"{str(error)[:200]}); convert it to .safetensors or a plain state dict"
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


def encoder_state_dict(mae: nn.Module) -> dict[str, Tensor]:
    """The MAE encoder's weights under timm ViT key names (CPU, detached): the fine-tuning init."""
    mae = getattr(mae, "_orig_mod", mae)
    return {key: value.detach().cpu().clone() for key, value in mae.encoder.state_dict().items()}


def load_encoder_into_vit(vit: nn.Module, encoder_state: dict[str, Tensor]) -> LoadReport:
    """Load a pretrained encoder into a ViT classifier; the new `head` is expected to be missing."""
    return load_state_into(vit, encoder_state, source="pretrained encoder")


def load_state_into(model: nn.Module, state: dict[str, Tensor], source: str) -> LoadReport:
    """Match, adapt and load `state` into `model`; refuse when it does not fit (see module docstring)."""
    model = getattr(model, "_orig_mod", model)
    target = model.state_dict()
    by_canonical = {_canonical(key): key for key in target}
    heads = _head_keys(model, target)
    matched: dict[str, Tensor] = {}
    report = LoadReport(source=source, loaded=0, total=len(target))
    mismatched: list[str] = []
    present = {_canonical(key) for key in state}
    for key, value in state.items():
        canonical = _canonical(key)
        target_key = _match(canonical, by_canonical, present)
        if target_key is None:
            report.unexpected.append(canonical)
            continue
        if _canonical(target_key) != canonical:
            report.adapted.append(f"{canonical}→{_canonical(target_key)} (MAE norm / timm fc_norm)")
        expected = target[target_key]
        if value.shape == expected.shape:
            matched[target_key] = value
            continue
        adapted = _adapt(target_key, value, expected, model)
        if adapted is not None:
            matched[target_key] = adapted
            report.adapted.append(f"{target_key}: {tuple(value.shape)}→{tuple(expected.shape)}")
        elif target_key in heads:
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
    report.loaded = len(matched)
    if report.loaded < MIN_LOADED_FRACTION * report.total:
        raise ModelError(
            f"{source} fits only {report.loaded}/{report.total} tensors of this model "
            f"(another architecture?); first unused checkpoint keys: {', '.join(report.unexpected[:5])}"
        )
    result = model.load_state_dict(matched, strict=False)
    report.missing = list(result.missing_keys)
    return report


def _missing_title(missing: list[str]) -> str:
    if missing and all(_canonical(key).rsplit(".", 1)[0] in HEAD_NAMES for key in missing):
        return "missing (kept at init; the new classifier head, as expected)"
    return "missing (kept at init)"


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


def _canonical(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _match(canonical: str, by_canonical: dict[str, str], present: set[str]) -> str | None:
    """Target key for a checkpoint key; MAE's final `norm` and timm's `fc_norm` stand in for each other
    when the checkpoint lacks the model's own one."""
    if canonical in by_canonical:
        return by_canonical[canonical]
    for source, alias in (("norm.", "fc_norm."), ("fc_norm.", "norm.")):
        renamed = alias + canonical[len(source) :]
        if canonical.startswith(source) and renamed in by_canonical and renamed not in present:
            return by_canonical[renamed]
    return None


def _head_keys(model: nn.Module, target: dict[str, Tensor]) -> set[str]:
    names = set(HEAD_NAMES)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    if isinstance(classifier, str):
        names.add(classifier)
    return {
        key for key in target if key.rsplit(".", 1)[0] in names or _canonical(key).rsplit(".", 1)[0] in names
    }


def _adapt(key: str, value: Tensor, expected: Tensor, model: nn.Module) -> Tensor | None:
    """A checkpoint tensor transformed to the model's shape, or None when no known transformation fits."""
    is_first_conv = (
        value.ndim == 4 and value.shape[0] == expected.shape[0] and value.shape[2:] == expected.shape[2:]
    )
    if is_first_conv and value.shape[1] == 3 and expected.shape[1] == 1:
        return adapt_input_conv(1, value).to(expected.dtype)
    is_pos_embed = key.endswith("pos_embed") and value.ndim == 3 and value.shape[-1] == expected.shape[-1]
    if is_pos_embed and value.shape[0] == 1:
        grid = int(round((expected.shape[1] - 1) ** 0.5))
        if (
            grid * grid + 1 != expected.shape[1]
            or int(round((value.shape[1] - 1) ** 0.5)) ** 2 + 1 != value.shape[1]
        ):
            return None
        return resample_abs_pos_embed(value, new_size=[grid, grid], num_prefix_tokens=1).to(expected.dtype)
    return None
