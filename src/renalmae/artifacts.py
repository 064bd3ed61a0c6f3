"""Artifacts: the files and folders the steps hand to each other, each class owning its layout.

An artifact class is the one place that names its files (`run.json`, `metrics.json`, ...), where it
lives by default (what `dvc.yaml` and the CLI use), how DVC tracks it, which KFP artifact type carries
it, which of its files holds the numbers a pipeline UI shows, and its HTML page. The small JSON files
are read here; the big files are read by the library code that makes sense of them, named on each
class (`reader`), which takes its file names from here.

This module imports nothing else from `renalmae`: every step imports it, so anything it imported would
become part of every step's code (and every DVC stage's code dependencies).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

CANDIDATE = "candidate"
"""Role of the model the study proposes (USF-MAE), in `run.json` and everywhere runs are paired."""
BASELINE = "baseline"
"""Role of the model it is compared against (DenseNet-169 by default)."""
ROLES = (CANDIDATE, BASELINE)


@dataclass(frozen=True)
class DvcOut:
    """One entry of a DVC stage's outputs: a file or folder of the artifact (`""` = the artifact itself)."""

    name: str = ""
    metric: bool = False
    """Listed under `metrics:` (what `dvc metrics show` and `dvc exp show` display)."""


class Artifact:
    """A step's input or output on disk. Subclasses set the class attributes below; an instance is a path."""

    default_path: ClassVar[str]
    """Where the DVC pipeline and the CLI keep it; `{step}` is the step that writes it."""
    kfp_name: ClassVar[str]
    """Name of the KFP input / output that carries it."""
    kfp_type: ClassVar[str] = "Dataset"
    """The `kfp.dsl` artifact class that carries it (`Dataset`, `Model`)."""
    option: ClassVar[str]
    """The CLI option that names it as a step input."""
    dvc_outs: ClassVar[tuple[DvcOut, ...]] = (DvcOut(),)
    metrics_file: ClassVar[str | None] = None
    """File whose numbers a KFP run shows in its `Metrics` artifact."""
    headline: ClassVar[tuple[str, ...]] = ()
    """The numbers of `metrics_file` a pipeline UI shows, as `fnmatch` patterns of their dotted names
    (empty: all of them); the rest stay in the file."""
    report_file: ClassVar[str | None] = None
    """HTML page a KFP run shows as its `HTML` artifact."""
    reader: ClassVar[str] = ""
    """The function that reads it, when that is not a method here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def path_for(cls, step: str = "") -> str:
        """`default_path` of the artifact `step` writes."""
        return cls.default_path.format(step=step)


class IngestedData(Artifact):
    """The `ingest` output: one table row per image plus uint8 caches at the working resolution."""

    TABLE = "table.parquet"
    IMAGES = "images.npy"
    MASKS = "masks.npy"
    SUMMARY = "ingest.json"
    default_path = "data/ingested"
    kfp_name = "ingested"
    option = "--ingest"
    metrics_file = SUMMARY
    reader = "renalmae.data.cache.load_ingested"

    CONTENT_COLUMNS = ("id", "sha256", "label", "group", "fold", "split", "origin")
    """What the data is, without where it came from: paths differ between a laptop and a pod."""

    def content_hash(self) -> str:
        """sha256 (hex) of the table's content columns, rows in id order: the version of the data read.

        The pixel hash of every image is one of the columns, so this changes with any image, label,
        group or given split, and not with the folder the images were read from. Raises
        `FileNotFoundError` when the table is missing.
        """
        import pandas as pd

        table = pd.read_parquet(self / self.TABLE, columns=list(self.CONTENT_COLUMNS))
        table = table.sort_values("id", kind="stable").astype(str)
        return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()


class ValidationReport(Artifact):
    """The `validate` output: the great-expectations result, a summary and an HTML page."""

    SUMMARY = "summary.json"
    RESULT = "validation_result.json"
    REPORT = "index.html"
    default_path = "reports/validation"
    kfp_name = "validation"
    option = "--validation"
    metrics_file = SUMMARY
    report_file = REPORT

    def status(self) -> str:
        """`passed` / `failed` from summary.json; `missing` when it is absent or unreadable."""
        try:
            summary = json.loads((self / self.SUMMARY).read_text())
        except (OSError, json.JSONDecodeError):
            return "missing"
        return "passed" if isinstance(summary, dict) and summary.get("success") is True else "failed"


class Splits(Artifact):
    """The `split` output: one JSON file with the holdout test ids and the validation ids of each fold."""

    default_path = "data/splits.json"
    kfp_name = "splits"
    option = "--splits"
    reader = "renalmae.data.splits.load_splits"


class Encoder(Artifact):
    """The `pretrain` output: the MAE encoder weights, its spec, the loss curve and reconstructions."""

    WEIGHTS = "encoder.safetensors"
    INFO = "encoder.json"
    LOSS = "loss.csv"
    LOSS_FIGURE = "loss.png"
    RECONSTRUCTIONS = "reconstructions.png"
    METRICS = "metrics.json"
    default_path = "models/pretrain"
    kfp_name = "encoder"
    kfp_type = "Model"
    option = "--encoder"
    metrics_file = METRICS
    reader = "renalmae.models.trained.load_encoder"


class TrainedRun(Artifact):
    """A `finetune` / `baseline` output: one folder per run (`run_dir`: a fold model of one task and one
    repeat) holding its weights, predictions and history.

    run.json holds at least {"model", "role", "task", "fold", "classes", "spec"} and "repeat" (0 when
    absent): `model` is the model's name (from its step's declaration), `role` is `candidate` or
    `baseline`.
    """

    RUN = "run.json"
    WEIGHTS = "weights.safetensors"
    PREDICTIONS = "predictions.parquet"
    HISTORY = "history.csv"
    METRICS = "metrics.json"
    REQUIRED_KEYS = ("model", "role", "task", "fold", "classes")
    default_path = "models/{step}"
    kfp_name = "model"
    kfp_type = "Model"
    option = "--runs"
    metrics_file = METRICS
    reader = "renalmae.evaluate.runs.load_runs"

    @staticmethod
    def run_dir(root: str | Path, task: str, fold: int, repeat: int = 0) -> Path:
        """The folder of one run under a training step's output `root`: `<task>/fold<k>`, and
        `<task>/fold<k>-repeat<r>` for repeat r ≥ 1 (repeat 0 stays where a single run always was)."""
        return Path(root) / task / (f"fold{fold}-repeat{repeat}" if repeat else f"fold{fold}")

    def info(self) -> dict[str, Any]:
        """run.json; raises `FileNotFoundError` / `json.JSONDecodeError` (callers name the fix)."""
        return json.loads((self / self.RUN).read_text())


class Comparison(Artifact):
    """The `compare` output: the statistical comparison, its report and the headline metrics."""

    METRICS = "metrics.json"
    SUMMARY = "comparison.json"
    MARKDOWN = "comparison.md"
    REPORT = "index.html"
    ENSEMBLE_PREDICTIONS = "ensemble_predictions.parquet"
    FIGURES = "figures"
    PLOTS = "plots"
    default_path = "reports/comparison"
    kfp_name = "comparison"
    option = "--comparison"
    # metrics.json is what `dvc exp show` / `dvc metrics diff` display, so it is a DVC metric and its
    # siblings are listed one by one (DVC refuses a metrics file inside an output folder).
    dvc_outs = (
        DvcOut(METRICS, metric=True),
        DvcOut(SUMMARY),
        DvcOut(MARKDOWN),
        DvcOut(REPORT),
        DvcOut(ENSEMBLE_PREDICTIONS),
        DvcOut(FIGURES),
        DvcOut(PLOTS),
    )
    metrics_file = METRICS
    report_file = REPORT

    @classmethod
    def curve(cls, kind: str, task: str, model: str) -> str:
        """`plots/<kind>_<task>_<model>.csv`: the holdout `roc` (fpr, tpr) or `pr` (recall, precision)
        curve of one model's fold ensemble, what `dvc plots` draws."""
        return f"{cls.PLOTS}/{kind}_{task}_{model}.csv"

    def read(self) -> dict[str, Any]:
        """metrics.json merged over comparison.json, per task ({} for files that do not exist)."""
        merged: dict[str, Any] = {}
        for name in (self.SUMMARY, self.METRICS):
            path = self / name
            if path.is_file():
                for task, section in json.loads(path.read_text()).items():
                    if isinstance(section, dict):
                        merged.setdefault(task, {}).update(section)
        return merged


class Explanations(Artifact):
    """The `explain` output: Score-CAM overlays and grids, localisation and faithfulness summaries, the
    per-image measurements, the runs explained."""

    LOCALISATION = "localisation.json"
    FAITHFULNESS = "faithfulness.json"
    MEASUREMENTS = "measurements.parquet"
    SELECTION = "selection.json"
    REPORT = "index.html"
    FIGURES = "figures"
    default_path = "reports/explain"
    kfp_name = "explanations"
    option = "--explanations"
    metrics_file = LOCALISATION
    headline = ("*.score.all.energy_in_mask.mean", "*.score.all.pointing_game.mean")
    """Per set, model and task: how much of the Score-CAM map falls on the lesion, and how often its peak."""
    report_file = REPORT


class Registered(Artifact):
    """The `register` output: one JSON file naming the registered model versions."""

    default_path = "models/registered.json"
    kfp_name = "registered"
    option = "--registered"
