"""Typed, validated parameters: the one object every step receives, loaded once from `params.yaml`.

Every knob of the pipeline lives here. Unknown keys and invalid values are refused with a message
that names the key and the allowed values, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from renalmae.errors import ParamsError

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
InputNormalisation = Literal["imagenet", "inception"]
"""Per-channel mean / std a published checkpoint's RGB input was normalised with (timm's constants):
`imagenet` (MAE, USF-MAE, timm DenseNet) or `inception` (0.5 / 0.5)."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: str = "phantom://renal?n=400&seed=0"
    """Labelled input: a class-folder tree, a manifest CSV, or `phantom://renal?n=..&seed=..`."""
    description: str = ""
    """What the images show, in the report's words (e.g. "fetal kidney", "breast"); "" = just "images"."""
    pool: list[str] = ["phantom://renal?n=200&seed=1&unlabelled=true"]
    """Unlabelled pretraining pools (folders of images or phantom URIs); may be empty."""
    classes: list[str] = ["normal", "utd", "mcdk"]
    negative_class: str = "normal"
    """The `binary` task is `negative_class` versus every other class."""
    image_size: Annotated[int, Field(ge=16, le=1024)] = 64
    """Working resolution (square): ingest resizes every image once to this size."""
    group_column: Literal["series_id", "patient_id", "none"] = "series_id"
    """Which manifest column groups correlated images; `none` makes every image its own group."""
    max_image_pixels: PositiveInt = 50_000_000
    """Images above this many pixels are refused (decompression-bomb guard)."""
    decode_workers: Annotated[int, Field(ge=0)] = 2
    """Parallel decoding processes at ingest (0 = decode in the calling process)."""
    shard_size: PositiveInt = 512
    """Images per ingest shard: the cache is written shard by shard (bounded memory), a killed ingest
    redoes only unfinished shards, and a Kubeflow run decodes shards in parallel pods."""
    drop_duplicates: bool = False
    """Ingest keeps only the first copy of an image whose decoded pixels repeat (labelled before pool,
    source order); copies under conflicting labels are all dropped. Dropped files are listed in ingest.json.
    False: every copy is kept and `validate` refuses duplicates that cross groups or labels."""
    near_duplicate_bits: Annotated[int, Field(ge=0, le=256)] | None = 32
    """Two images are near-duplicates when their 256-bit perceptual hashes differ in at most this many bits
    (re-exports: <= 8, burned-in annotations: ~16-24, distinct images: >= 48); null turns the search off.
    Near-duplicate labelled images are one split group, so they never cross a fold, test or external."""
    near_duplicate_conflicts: Literal["refuse", "drop", "keep"] = "refuse"
    """Near-duplicates under different labels: `refuse` (validate fails, naming them), `drop` (ingest drops
    both images, listed in ingest.json) or `keep` (grouped together, labels left as they are)."""
    crop: str = "none"
    """Crop each image and its mask alike before resizing: `none`; `auto`, the imaging sector of an
    ultrasound screen export (largest connected lit region: burned-in text, calipers outside the fan,
    scale bars and the black frame are cut off); or a fixed box `x0,y0,x1,y1` in pixels of the upright
    image (x1, y1 exclusive). The box used for each image is the table's `crop` column; models record the
    setting so `predict` crops alike."""

    @field_validator("crop")
    @classmethod
    def _crop_is_none_auto_or_a_box(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("none", "auto"):
            return value
        parts = [part.strip() for part in value.split(",")]
        if len(parts) != 4 or not all(part.isdigit() for part in parts):
            raise ValueError(f"crop must be none, auto or x0,y0,x1,y1 (whole pixels >= 0), got '{value}'")
        x0, y0, x1, y1 = (int(part) for part in parts)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"crop box {value} is empty: it needs x0 < x1 and y0 < y1")
        return f"{x0},{y0},{x1},{y1}"

    @model_validator(mode="after")
    def _negative_class_is_a_class(self) -> DataParams:
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"classes must be at least two distinct names (got {self.classes})")
        if self.negative_class not in self.classes:
            raise ValueError(f"negative_class '{self.negative_class}' must be one of classes {self.classes}")
        return self


class PhantomParams(Section):
    difficulty: Probability = 0.6
    """0 = lesions large and anechoic (easy), 1 = small, low-contrast lesions under heavy speckle."""
    class_fractions: list[Probability] = [0.67, 0.27, 0.06]
    """Fractions of normal / utd / mcdk (the study's 646 / 259 / 64)."""

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> PhantomParams:
        if len(self.class_fractions) != 3 or abs(sum(self.class_fractions) - 1.0) > 1e-6:
            raise ValueError(f"class_fractions must be 3 numbers summing to 1 (got {self.class_fractions})")
        return self


class ValidateParams(Section):
    min_images_per_class: PositiveInt = 10
    min_side: PositiveInt = 32
    max_side: PositiveInt = 8192
    max_aspect_ratio: Annotated[float, Field(ge=1.0)] = 3.0
    min_pixel_std: Annotated[float, Field(ge=0.0)] = 2.0
    """An image whose grey levels vary less than this is blank or constant."""


class SplitParams(Section):
    folds: list[int] = [0, 1, 2, 3, 4]
    """Fold indices 0..k-1 (k = 5 by default); a list so that `dvc.yaml` can fan out over it."""
    test_fraction: Annotated[float, Field(gt=0.0, lt=0.9)] = 0.2
    seed: int = 0
    use_given: bool = True
    """Use the input's own `fold` / `split` columns when present instead of drawing new ones."""
    external_folds: list[int] = []
    """Given `fold` values whose images form the external test set (another site, device or period):
    never trained, selected, thresholded or pretrained on; reported beside the holdout, first."""

    @model_validator(mode="after")
    def _folds_are_a_range(self) -> SplitParams:
        if self.folds != list(range(len(self.folds))) or not 2 <= len(self.folds) <= 20:
            raise ValueError(f"folds must be [0, 1, ..., k-1] with 2 <= k <= 20 (got {self.folds})")
        if self.external_folds and not self.use_given:
            raise ValueError("external_folds names given folds, so it needs use_given: true")
        return self

    @property
    def k_folds(self) -> int:
        return len(self.folds)


class EncoderParams(Section):
    arch: str = "vit_tiny_patch16_224"
    """A timm VisionTransformer name; the overrides below change its size."""
    patch_size: PositiveInt = 8
    embed_dim: PositiveInt | None = 96
    depth: PositiveInt | None = 4
    num_heads: PositiveInt | None = 3


class MAEParams(Section):
    mask_ratio: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.75
    decoder_embed_dim: PositiveInt = 64
    decoder_depth: PositiveInt = 2
    decoder_num_heads: PositiveInt = 4
    norm_pix_loss: bool = True


class AugmentParams(Section):
    """Geometry and intensity augmentation on the device (`renalmae.train.augment`), in this order:
    rotation, flips, random resized crop (USF-MAE's order), then gamma, contrast and speckle."""

    crop_scale: tuple[PositiveFloat, PositiveFloat] = (0.7, 1.0)
    """Random resized crop area range as a fraction of the image (torchvision `RandomResizedCrop(scale)`).
    Values above 1 are allowed (USF-MAE: 0.5-2.0); as in torchvision, a crop that would leave the image is
    drawn again (10 tries, then the whole image), so they shift the draws towards large crops."""
    hflip: Probability = 0.5
    vflip: Probability = 0.0
    rotation_degrees: Annotated[float, Field(ge=0.0, le=180.0)] | tuple[float, float] = 10.0
    """Rotation range in degrees, counter-clockwise, as torchvision `RandomRotation(degrees)`: a number d
    means [-d, d], a pair [low, high] that range (USF-MAE: [0, 90]). Corners are filled with black."""
    gamma: tuple[float, float] = (0.8, 1.25)
    contrast: tuple[float, float] = (0.8, 1.2)
    speckle_std: Annotated[float, Field(ge=0.0)] = 0.05

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> AugmentParams:
        if self.crop_scale[0] > self.crop_scale[1]:
            raise ValueError(f"crop_scale must be [low, high] with low <= high (got {list(self.crop_scale)})")
        if isinstance(self.rotation_degrees, tuple):
            low, high = self.rotation_degrees
            if not -180.0 <= low <= high <= 180.0:
                raise ValueError(
                    f"rotation_degrees must be [low, high] with -180 <= low <= high <= 180 "
                    f"(got {list(self.rotation_degrees)})"
                )
        return self

    @property
    def rotation_range(self) -> tuple[float, float]:
        """(low, high) rotation angle in degrees."""
        if isinstance(self.rotation_degrees, tuple):
            return self.rotation_degrees
        return (-self.rotation_degrees, self.rotation_degrees)


class TrainParams(Section):
    """Settings shared by every training step (the one training loop)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`auto`: bf16 autocast on CUDA, fp32 on the CPU."""
    compile: bool = False
    checkpoint_every_steps: PositiveInt = 50
    checkpoint_dir: str | None = None
    """Where resumable checkpoints go (`<dir>/<run name>/`); null = `<output parent>/.checkpoints/`."""
    log_every_steps: PositiveInt = 10
    """Losses are read back from the device (and logged) only every this many optimizer steps."""
    grad_accum_steps: PositiveInt = 1
    progress: bool = True
    cpu_threads: Annotated[int, Field(ge=0)] = 0
    """torch threads of every step that runs torch on the CPU (training, explain); 0 = the cores available to
    the process (affinity mask, cgroup CPU quota; `renalmae.train.threads`), logged. 1 suits tiny models on a
    busy machine."""
    device_cache_bytes: Annotated[int, Field(ge=0)] | None = None
    """Images up to this many bytes are copied onto the device once; a larger set streams from the
    memory-mapped cache with prefetch. null = half the device's free memory (host memory on the CPU)."""
    selection_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.1
    """Share of each fold's training images (grouped, stratified) held out to pick the epoch / stop early,
    so the validation fold never chooses the model it measures; 0 = select on the validation fold."""
    selection_min_groups_per_class: Annotated[int, Field(ge=0)] = 3
    """Floor of the selection split: groups (patients / series) of every class in it. A split drawn below
    the floor takes more groups of that class, up to half of the class's training groups; a model chosen
    on a split still below it is flagged in run.json and the comparison (docs/recipe.md). 0 = no floor."""
    selection_min_images_per_class: Annotated[int, Field(ge=0)] = 10
    """Floor of the selection split: images of every class in it (grown and flagged like the groups')."""


class PretrainParams(Section):
    epochs: Annotated[int, Field(ge=0)] = 4
    """0 with `init_checkpoint`: no pretraining; the published encoder is fine-tuned as it is (the paper)."""
    batch_size: PositiveInt = 64
    base_lr: Annotated[float, Field(gt=0)] = 1.5e-4
    """Scaled by batch_size / 256, as in MAE."""
    warmup_epochs: Annotated[float, Field(ge=0)] = 1
    weight_decay: Annotated[float, Field(ge=0)] = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: Annotated[float, Field(gt=0)] | None = 1.0
    init_checkpoint: str | None = None
    """Local path of a published MAE / USF-MAE checkpoint to start from; null = train from scratch."""
    init_checkpoint_data: str | None = None
    """What `init_checkpoint` was pretrained on (e.g. "ImageNet-1k"); required with it: reports state it."""
    init_checkpoint_norm: InputNormalisation = "imagenet"
    """Normalisation of the checkpoint's RGB input, folded into our 1-channel patch embedding."""
    include_development: bool = False
    """false: the MAE pool is the unlabelled pools only; true: the development images (never the holdout or
    external ones) join it, and reports flag the run as transductive."""
    seed: int = 0
    gpus: PositiveInt = 1
    """Data-parallel processes per node (one per GPU; gloo processes on the CPU); > 1: the Kubeflow task
    asks for this many GPUs and runs the step under `torchrun --nproc-per-node`. batch_size is global."""
    nodes: PositiveInt = 1
    """> 1: the Kubeflow DAG runs pretraining as a Kubeflow Trainer TrainJob of this many nodes."""
    trainjob_runtime: str = "torch-distributed"
    """The ClusterTrainingRuntime the TrainJob uses (nodes > 1)."""
    trainjob_restarts: Annotated[int, Field(ge=0)] = 3
    """A failed TrainJob (a node lost, a pod evicted) is created again this many times; each new one
    resumes from the last checkpoint on the shared volume."""

    @model_validator(mode="after")
    def _checkpoint_states_its_data(self) -> PretrainParams:
        _require_checkpoint_data(self.init_checkpoint, self.init_checkpoint_data, "pretrain")
        if self.epochs == 0 and not self.init_checkpoint:
            raise ValueError("epochs: 0 skips pretraining, so it needs init_checkpoint (a published encoder)")
        return self


class ClassifierTrainingParams(Section):
    """What fine-tuning and the baseline share: one training recipe, two models (their sections add the
    model's own settings and their defaults)."""

    epochs: PositiveInt = 4
    batch_size: PositiveInt = 32
    base_lr: Annotated[float, Field(gt=0)] = 1e-3
    warmup_epochs: Annotated[float, Field(ge=0)] = 1
    weight_decay: Annotated[float, Field(ge=0)] = 0.05
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    mixup: Annotated[float, Field(ge=0)] = 0.0
    """Mixup alpha (λ ~ Beta(α, α)), timm `Mixup` on the device; 0 = off (MAE fine-tuning: 0.8)."""
    cutmix: Annotated[float, Field(ge=0)] = 0.0
    """CutMix alpha; 0 = off (MAE fine-tuning: 1.0). With both on, each batch uses one of them (even odds)."""
    random_erasing: Probability = 0.0
    """Chance an image gets a random-erasing box of per-pixel noise (timm `RandomErasing`, mode "pixel");
    MAE fine-tuning: 0.25."""
    class_balance: Literal["sampler", "loss", "none"] = "loss"
    early_stopping_patience: Annotated[int, Field(ge=0)] = 3
    """Stop after this many epochs without a better validation AUC (0 = never); the best epoch is kept."""
    seed: int = 0
    """Repeat r of a run is seeded `seed + r` (`evaluate.repeats`)."""


class FinetuneParams(ClassifierTrainingParams):
    tasks: list[Literal["binary", "multiclass"]] = ["binary", "multiclass"]
    base_lr: Annotated[float, Field(gt=0)] = 5e-4
    """Scaled by batch_size / 256, as in MAE fine-tuning."""
    layer_decay: Annotated[float, Field(gt=0, le=1)] = 0.65
    drop_path: Annotated[float, Field(ge=0, lt=1)] = 0.1


class BaselineParams(ClassifierTrainingParams):
    arch: str = "densenet169"
    init_checkpoint: str | None = None
    """Local path of an ImageNet (or other) checkpoint of `arch` to start from; null = timm's random init."""
    init_checkpoint_data: str | None = None
    """What `init_checkpoint` was pretrained on (e.g. "ImageNet-1k"); required with it: reports state it."""
    init_checkpoint_norm: InputNormalisation = "imagenet"
    """Normalisation of the checkpoint's RGB input, folded into our 1-channel first convolution."""
    base_lr: Annotated[float, Field(gt=0)] = 1e-3
    """The peak learning rate itself (not scaled by batch size)."""
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4

    @model_validator(mode="after")
    def _checkpoint_states_its_data(self) -> BaselineParams:
        _require_checkpoint_data(self.init_checkpoint, self.init_checkpoint_data, "baseline")
        return self


def _require_checkpoint_data(checkpoint: str | None, data: str | None, section: str) -> None:
    if checkpoint and not (data and data.strip()):
        raise ValueError(
            f"{section}.init_checkpoint is set but {section}.init_checkpoint_data is not: say what the "
            'checkpoint was pretrained on (e.g. "ImageNet-1k"), every report states it'
        )


Hypothesis = Literal[
    "delong:test",
    "delong:external",
    "mcnemar:test",
    "mcnemar:external",
    "wilcoxon_auc:validation",
    "wilcoxon_f1:validation",
]


class EvaluateParams(Section):
    threshold: Literal["youden", "sensitivity"] = "youden"
    target_sensitivity: Probability = 0.9
    bootstrap_resamples: Annotated[int, Field(ge=100)] = 2000
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    """Of every interval; alpha = 1 - confidence for the tests."""
    calibration_bins: Annotated[int, Field(ge=2)] = 10
    hypotheses: list[Hypothesis] = ["delong:test", "delong:external"]
    """The declared hypotheses: Holm's family holds these tests only (a set that does not exist, e.g. no
    external set, is skipped); every other test is reported as descriptive."""
    sensitivity_tolerance: Probability = 0.1
    """A decision rule whose sensitivity on a reported set (holdout, external) falls more than this below
    its sensitivity on the validation folds that chose it is flagged: its operating point did not travel."""
    repeats: PositiveInt = 1
    """Training runs per model and fold (seeds seed .. seed + repeats - 1 of `finetune` / `baseline`).
    One run is one draw: with R >= 3 the declared DeLong hypotheses are tested over the repeats, training
    variance included (Obuchowski-Rockette); with 1 the report says training variance is not counted."""
    seed: int = 0


class ExplainParams(Section):
    images_per_class: PositiveInt = 4
    """Images per true class shown as figures (a seeded sample); the metrics use `max_images`."""
    max_images: PositiveInt = 200
    """Holdout images measured: every test image with a lesion mask, a seeded sample of this many when
    there are more (without any masks: a seeded sample of the test images)."""
    weighting: Literal["score", "softmax"] = "score"
    """Channel weights of the maps shown (figures, single-image explanations): `score` = Wang et al.
    2020's increase of confidence over the baseline input; `softmax` = the grad-cam library's softmax
    over channels. The `explain` step measures both from the same masked passes."""
    vit_layer: str = "blocks.-1.norm1"
    """The ViT's Score-CAM layer: `blocks.i.norm1` (a block's normalised input) or `blocks.i` (its residual
    output); choose it on a validation fold (`renalmae.explain.tokens.layer_agreement`)."""
    vit_tokens: Literal["raw", "unit"] = "raw"
    """`unit`: each patch token of the ViT layer is scaled to unit L2 norm before Score-CAM, so high-norm
    artefact tokens (Darcet et al. 2024) weigh no more than the others; `raw`: as the layer gives them."""
    cnn_layer: str = "features.denseblock2"
    """The CNN's Score-CAM layer. At 64 px DenseNet-169's `denseblock2` is an 8 × 8 grid, like the ViT's
    patch grid (patch 8); `denseblock4` would be 2 × 2. At 224 px use `features.denseblock3` (14 × 14)."""
    vit_channels: Annotated[int, Field(ge=0)] = 0
    """Top-k ViT channels by spatial standard deviation weighed per image (Faster Score-CAM); 0 = all."""
    cnn_channels: Annotated[int, Field(ge=0)] = 64
    """Top-k CNN channels by spatial standard deviation weighed per image (Faster Score-CAM); 0 = all."""
    min_grid: PositiveInt = 7
    """A layer whose grid has fewer cells a side is reported with a warning (its maps cannot localise)."""
    batch_size: PositiveInt = 64
    """Masked inputs per Score-CAM forward pass."""
    faithfulness_steps: Annotated[int, Field(ge=2)] = 8
    """Points of the deletion / insertion curves (pixels removed or revealed in this many equal shares)."""
    target: Literal["true", "predicted"] = "true"
    """Class whose evidence is mapped: the image's true class (localisation metrics) or the predicted one."""
    pointing_tolerance_px: Annotated[int, Field(ge=0)] = 1
    """The pointing game counts a map maximum this many pixels outside the lesion mask as a hit."""
    lesion_placements: PositiveInt = 20
    """Lesion test: seeded placements of the lesion's shape elsewhere in the image (off the lesion) per
    measured image; each costs one forward pass."""
    occlusion_images: Annotated[int, Field(ge=0)] = 200
    """Measured images (a seeded draw spread over groups) that get an occlusion map on Score-CAM's grid
    and each map's rank agreement with it; each costs grid cells (64 at 8 × 8) forward passes."""
    seed: int = 0
    """Seed of the image samples (figures, `max_images`) and of the random pixel order of the baseline."""


class TrackingParams(Section):
    enabled: bool = True
    tracking_uri: str | None = None
    """null: `MLFLOW_TRACKING_URI` when set, else the embedded `sqlite:///mlflow.db`."""
    experiment: str = "renalmae"


class RegistryParams(Section):
    model_prefix: str = "renal"
    """Registered models are named `<model_prefix>-<model>-<task>`: letters, digits, `-`, `_`, `.` only."""
    min_auc: Probability = 0.6
    min_f1: Probability = 0.0
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    """One-sided level of the non-inferiority test against the champion."""
    noninferiority_margin: Annotated[float, Field(ge=0, lt=1)] = 0.02
    """δ: promote when the one-sided (1 - alpha) lower bound of AUC(candidate) - AUC(champion) > -δ."""
    require_superiority: bool = False
    """Promote only when that lower bound is above 0 (the candidate is shown better)."""
    max_decisions_per_evaluation_set: PositiveInt = 10
    """Gate decisions allowed on one evaluation set (content hash) before it must be refreshed."""

    @field_validator("model_prefix")
    @classmethod
    def _prefix_makes_registrable_names(cls, value: str) -> str:
        # MLflow refuses '/' and ':' in a name; `models:/NAME@ALIAS` reads '@' as the alias, and '?', '#',
        # '%' or spaces as parts of a URI; a name starting with '.' may read as a relative path
        if not re.fullmatch(r"[^\W_][\w.-]*", value):
            raise ValueError(
                f"model_prefix '{value}' cannot name a registered model: use letters, digits, '-', '_' "
                "and '.' only, starting with a letter or digit (MLflow refuses '/' and ':', and "
                "models:/NAME@ALIAS reads '@' as an alias)"
            )
        return value


class Params(Section):
    """All parameters of one pipeline run."""

    profile: str = "tiny"
    seed: int = 0
    data: DataParams = DataParams()
    phantom: PhantomParams = PhantomParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    split: SplitParams = SplitParams()
    encoder: EncoderParams = EncoderParams()
    mae: MAEParams = MAEParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    pretrain: PretrainParams = PretrainParams()
    finetune: FinetuneParams = FinetuneParams()
    baseline: BaselineParams = BaselineParams()
    evaluate: EvaluateParams = EvaluateParams()
    explain: ExplainParams = ExplainParams()
    tracking: TrackingParams = TrackingParams()
    registry: RegistryParams = RegistryParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _project_dir: Path | None = PrivateAttr(None)
    """The folder of the params file (`load_params`): where relative paths of a store resolve."""

    @property
    def project_dir(self) -> Path | None:
        return self._project_dir

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def hash(self) -> str:
        """sha256 of the canonical JSON of every parameter (defaults included)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _describe_error(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key `{key}`; allowed keys here: {_allowed_keys(error['loc'])}"
    message = error["msg"]
    if kind == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    got = error.get("input")
    return f"{source}: key `{key}`: {message} (got {got!r})"


def _allowed_keys(location: tuple) -> str:
    model: type[BaseModel] = Params
    for part in location[:-1]:
        field = next(
            (f for name, f in model.model_fields.items() if part in (name, f.alias)),
            None,
        )
        if field is None or not isinstance(field.annotation, type):
            break
        model = field.annotation
    names = [field.alias or name for name, field in model.model_fields.items()]
    return ", ".join(sorted(names))


def params_from_dict(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a parsed params mapping; raise `ParamsError` naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        lines = [_describe_error(e, source) for e in error.errors()]
        raise ParamsError("invalid parameters:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate a params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} not found; pass --params PATH or run from the project root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error}); fix the syntax") from None
    params = params_from_dict(raw, source=str(path))
    params._project_dir = path.absolute().parent
    return params
