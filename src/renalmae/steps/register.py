"""Register step: log each model family's fold ensemble per task to MLflow as a `challenger` version.

For every (model family, task) among the run directories: the fold models are bundled into one pyfunc
(mean probability, with preprocessing; see `renalmae.registry.pyfunc`), uploaded with the holdout
evaluation set, verified, registered as a version of `<prefix>-<model>-<task>` with lineage, validation,
holdout-metric and comparison tags, and given the `challenger` alias. `champion` is never touched here:
only `renalmae promote` moves it. Writes `models/registered.json` (names, versions, run ids, URIs).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from renalmae.artifacts import Comparison, ValidationReport
from renalmae.errors import DataError, ParamsError
from renalmae.evaluate.runs import ModelRun, holdout_ensemble, load_runs
from renalmae.io import write_json
from renalmae.params import Params
from renalmae.pipeline import step
from renalmae.registry.connection import mlflow_client, redacted, tracking_uri
from renalmae.registry.lineage import lineage_tags
from renalmae.registry.pyfunc import bundle_ensemble
from renalmae.registry.tracking import track_step
from renalmae.registry.versions import (
    as_dict,
    evaluation_frame,
    operating_point,
    p_values,
    register_version,
    version_tags,
)
from renalmae.run_context import RunContext

STEP = step("register")


def validation_status(validation_dir: Path) -> str:
    """`passed` / `failed` from the validate step's summary.json, `unknown` when it is absent."""
    status = ValidationReport(validation_dir).status()
    return "unknown" if status == "missing" else status


def comparison_report(comparison_dir: Path) -> dict[str, Any]:
    """metrics.json merged over comparison.json of the compare step ({} when compare has not run)."""
    return Comparison(comparison_dir).read()


def trained_data_version(runs: list[ModelRun]) -> str:
    """The data version (ingested table's content hash) every fold model was trained on.

    Raises `DataError` when the fold models of one ensemble were trained on different data.
    """
    versions = sorted({run.data_version for run in runs})
    if len(versions) > 1:
        listed = ", ".join(f"fold {run.fold}: {run.data_version[:12]}" for run in runs)
        raise DataError(
            f"the {runs[0].model} {runs[0].task} fold models were trained on different ingested data "
            f"({listed}); re-run finetune / baseline for every fold on the same data"
        )
    return versions[0]


def holdout_metrics(runs: list[ModelRun], report: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """compare's operating point for the fold ensemble (rule + metrics per set) and its evaluation set."""
    first = runs[0]
    point = operating_point(report, first.task, first.model)
    ids, y_true, probabilities = holdout_ensemble({run.fold: run for run in runs})
    return point, evaluation_frame(ids, y_true, probabilities, first.classes, point["rule"])


def run(
    params: Params,
    run_dirs: list[Path],
    comparison_dir: Path,
    validation_dir: Path,
    out_path: Path,
    context: RunContext | None = None,
) -> Path:
    if not params.tracking.enabled:
        raise ParamsError("register needs MLflow: set tracking.enabled: true in params.yaml")
    groups: dict[tuple[str, str], list[ModelRun]] = defaultdict(list)
    for model_run in load_runs(run_dirs, list(params.finetune.tasks), list(params.split.folds)):
        groups[(model_run.model, model_run.task)].append(model_run)
    if not groups:
        raise DataError(
            "register found no trained-model directories (run.json); run finetune / baseline first"
        )
    status = validation_status(validation_dir)
    report = comparison_report(comparison_dir)
    uri = tracking_uri(params)
    client = mlflow_client(uri)
    registered = []
    for (model, task), runs in sorted(groups.items()):
        point, evaluation = holdout_metrics(runs, report)
        name = f"{params.registry.model_prefix}-{model}-{task}"
        data_version = trained_data_version(runs)
        tags = version_tags(
            lineage_tags(params, data_version, context), status, point, p_values(report, task),
            params.data.negative_class,
        )  # fmt: skip
        with track_step(params, "register", data_version, context, model=model, task=task) as tracker:
            holdout = point["sets"]["test"]
            tracker.log_metrics(
                {f"holdout_{key}": holdout[key] for key in ("auc", "f1") if holdout.get(key) is not None}
            )
            with tempfile.TemporaryDirectory(prefix="renalmae-bundle-") as staging:
                bundle_dir = Path(staging) / "ensemble"
                run_dirs = [run.run_dir for run in runs]
                bundle_ensemble(
                    run_dirs, params.data.negative_class, bundle_dir, rule=point["rule"],
                    min_pixel_std=params.validate_.min_pixel_std,
                )  # fmt: skip
                version = register_version(client, uri, name, tracker.run_id, bundle_dir, evaluation, tags)
            tracker.set_tags(
                {"renalmae.registered_model": name, "renalmae.registered_version": version.version}
            )
        registered.append(
            {**as_dict(version), "model": model, "task": task, "folds": sorted(r.fold for r in runs)}
        )
    write_json(out_path, {"tracking_uri": redacted(uri), "models": registered})
    return Path(out_path)
