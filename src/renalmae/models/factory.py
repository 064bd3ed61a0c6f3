"""Model factory: the one place that turns params (or a saved spec) into an `nn.Module`.

Three kinds, one entry point (`create_model`), no `if model == ...` elsewhere:

- `mae`: `MaskedAutoencoderViT` whose encoder is the timm ViT named by `params.encoder`
  (num_classes=0), decoder from `params.mae`.
- `vit`: the timm ViT classifier built from the same encoder kwargs plus `num_classes` and
  `drop_path_rate = params.finetune.drop_path`, so the pretrained encoder loads into it key for key.
- `cnn`: the timm CNN `params.baseline.arch` (DenseNet-169 by default).

Every model takes greyscale `[B, 1, H, W]` input (`in_chans=1`, see `renalmae.models.preprocess`).
The ViT uses `global_pool="avg"` with the final norm applied per token (`fc_norm=False`), the MAE
fine-tuning recipe's average pooling on the same normalised tokens the MAE encoder produced.

`model_spec` returns the exact timm name and kwargs as plain JSON, so a trained model can be rebuilt by
`build_from_spec` from its `run.json` alone, without the params that made it.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

import timm
from timm.models import model_entrypoint, split_model_name_tag
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from renalmae.errors import ModelError
from renalmae.models.mae import MaskedAutoencoderViT
from renalmae.params import Params

ModelKind = Literal["mae", "vit", "cnn"]
MODEL_KINDS: tuple[str, ...] = ("mae", "vit", "cnn")
SPEC_VERSION = 1
VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit")


def create_model(kind: str, params: Params, num_classes: int | None = None) -> nn.Module:
    """Build a freshly initialised model of `kind` ("mae", "vit" or "cnn") from `params`."""
    return build_from_spec(model_spec(kind, params, num_classes))


def model_spec(kind: str, params: Params, num_classes: int | None = None) -> dict[str, Any]:
    """The JSON-able recipe of a model: `{"kind", "version", "name", "kwargs"[, "mae"]}`.

    `name` / `kwargs` are exactly what `timm.create_model` receives (for `mae`: the encoder's).
    """
    if kind == "mae":
        return {
            "kind": "mae",
            "version": SPEC_VERSION,
            "name": params.encoder.arch,
            "kwargs": _vit_kwargs(params, num_classes=0, drop_path_rate=0.0),
            "mae": {
                "decoder_embed_dim": params.mae.decoder_embed_dim,
                "decoder_depth": params.mae.decoder_depth,
                "decoder_num_heads": params.mae.decoder_num_heads,
                "norm_pix_loss": params.mae.norm_pix_loss,
                "mask_ratio": params.mae.mask_ratio,
            },
        }
    if kind == "vit":
        kwargs = _vit_kwargs(params, _require_classes(kind, num_classes), params.finetune.drop_path)
        return {"kind": "vit", "version": SPEC_VERSION, "name": params.encoder.arch, "kwargs": kwargs}
    if kind == "cnn":
        kwargs = {"in_chans": 1, "num_classes": _require_classes(kind, num_classes)}
        return {"kind": "cnn", "version": SPEC_VERSION, "name": params.baseline.arch, "kwargs": kwargs}
    raise ModelError(f"unknown model kind '{kind}'; use one of {', '.join(MODEL_KINDS)}")


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a freshly initialised model from a `model_spec` dict (e.g. read back from run.json)."""
    try:
        kind, name, kwargs = spec["kind"], spec["name"], dict(spec["kwargs"])
    except (KeyError, TypeError):
        raise ModelError(
            f"model spec {spec!r} lacks kind / name / kwargs; was it written by model_spec?"
        ) from None
    if kind not in MODEL_KINDS:
        raise ModelError(f"unknown model kind '{kind}' in spec; use one of {', '.join(MODEL_KINDS)}")
    param_key = "baseline.arch" if kind == "cnn" else "encoder.arch"
    _check_known(name, param_key)
    is_vit_family = model_entrypoint(split_model_name_tag(name)[0]).__module__ in VIT_MODULES
    if kind != "cnn" and not is_vit_family:
        raise ModelError(
            f"encoder.arch '{name}' is not a timm VisionTransformer; "
            "pick e.g. vit_tiny_patch16_224, vit_small_patch16_224 or vit_base_patch16_224"
        )
    model = _timm_model(name, kwargs, param_key)
    if kind == "cnn":
        if isinstance(model, VisionTransformer):
            raise ModelError(f"baseline.arch '{name}' is a ViT; the baseline must be a CNN, e.g. densenet169")
        return model
    if not isinstance(model, VisionTransformer):
        raise ModelError(f"encoder.arch '{name}' builds a {type(model).__name__}, not a VisionTransformer")
    if kind == "vit":
        return model
    return MaskedAutoencoderViT(model, **spec["mae"])


def _vit_kwargs(params: Params, num_classes: int, drop_path_rate: float) -> dict[str, Any]:
    encoder, image_size = params.encoder, params.data.image_size
    if image_size % encoder.patch_size:
        raise ModelError(
            f"data.image_size {image_size} is not divisible by encoder.patch_size {encoder.patch_size}; "
            f"change one of them (e.g. image_size {image_size - image_size % encoder.patch_size})"
        )
    if (
        encoder.embed_dim is not None
        and encoder.num_heads is not None
        and encoder.embed_dim % encoder.num_heads
    ):
        raise ModelError(
            f"encoder.embed_dim {encoder.embed_dim} must be divisible by "
            f"encoder.num_heads {encoder.num_heads}"
        )
    overrides = {"embed_dim": encoder.embed_dim, "depth": encoder.depth, "num_heads": encoder.num_heads}
    return {
        "img_size": image_size,
        "patch_size": encoder.patch_size,
        "in_chans": 1,
        "num_classes": num_classes,
        "global_pool": "avg",
        "fc_norm": False,
        "drop_path_rate": drop_path_rate,
        **{key: value for key, value in overrides.items() if value is not None},
    }


def _require_classes(kind: str, num_classes: int | None) -> int:
    if num_classes is None or num_classes < 1:
        raise ModelError(f"model kind '{kind}' needs num_classes >= 1 (got {num_classes})")
    return num_classes


def _check_known(name: str, param_key: str) -> None:
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
        examples = close or ["vit_tiny_patch16_224", "vit_base_patch16_224", "densenet169", "resnet50"]
        raise ModelError(
            f"{param_key}: unknown timm model '{name}'; close valid names: {', '.join(examples)}"
        )


def _timm_model(name: str, kwargs: dict[str, Any], param_key: str) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise ModelError(f"{param_key}: timm cannot build '{name}' with {kwargs}: {error}") from None
