"""The `renalmae` command line: one subcommand per pipeline step, plus registry and pipeline tools.

Every subcommand loads `--params` once, calls the step function, and prints where the outputs went.
A `RenalMAEError` is printed as one line and exits non-zero; anything else is a bug and keeps its
traceback. Default paths are the ones `dvc.yaml` uses.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from renalmae.errors import ParamsError, RenalMAEError
from renalmae.params import load_params

INGEST_DIR = Path("data/ingested")
VALIDATION_DIR = Path("reports/validation")
SPLITS_FILE = Path("data/splits.json")
PRETRAIN_DIR = Path("models/pretrain")
FINETUNE_ROOT = Path("models/finetune")
BASELINE_ROOT = Path("models/baseline")
COMPARISON_DIR = Path("reports/comparison")
EXPLAIN_DIR = Path("reports/explain")
EXPLAIN_IMAGES_DIR = Path("reports/explain-images")
REGISTERED_FILE = Path("models/registered.json")


def _step(name: str) -> Callable:
    return importlib.import_module(f"renalmae.steps.{name}").run


def _fold_dir(root: Path, task: str, fold: int) -> Path:
    return root / task / f"fold{fold}"


def cmd_ingest(args, params):
    return _step("ingest")(params, out_dir=args.out)


def cmd_validate(args, params):
    return _step("validate")(params, ingest_dir=args.ingest, report_dir=args.out)


def cmd_split(args, params):
    return _step("split")(params, ingest_dir=args.ingest, validation_dir=args.validation, out_path=args.out)


def cmd_pretrain(args, params):
    return _step("pretrain")(params, ingest_dir=args.ingest, splits_path=args.splits, out_dir=args.out)


def cmd_finetune(args, params):
    out_dir = args.out or _fold_dir(FINETUNE_ROOT, args.task, args.fold)
    return _step("finetune")(
        params,
        ingest_dir=args.ingest,
        splits_path=args.splits,
        encoder_dir=args.encoder,
        task=args.task,
        fold=args.fold,
        out_dir=out_dir,
    )


def cmd_baseline(args, params):
    out_dir = args.out or _fold_dir(BASELINE_ROOT, args.task, args.fold)
    return _step("baseline")(
        params,
        ingest_dir=args.ingest,
        splits_path=args.splits,
        task=args.task,
        fold=args.fold,
        out_dir=out_dir,
    )


def _run_dirs(roots: list[Path]) -> list[Path]:
    """Every trained-model directory (one holding run.json) under the given roots, sorted."""
    return sorted({run_file.parent for root in roots for run_file in Path(root).rglob("run.json")})


def cmd_compare(args, params):
    return _step("compare")(params, run_dirs=_run_dirs(args.runs), out_dir=args.out)


def cmd_explain(args, params):
    if args.model is not None or args.images:
        return _explain_files(args, params)
    return _step("explain")(
        params,
        ingest_dir=args.ingest,
        splits_path=args.splits,
        run_dirs=_run_dirs(args.runs),
        out_dir=args.out or EXPLAIN_DIR,
    )


def _explain_files(args, params):
    """`renalmae explain --model RUN_DIR|models:/… IMAGE…`: Score-CAM of the predicted class of each file."""
    from renalmae.explain.images import explain_images

    if args.model is None or not args.images:
        raise ParamsError("explaining image files needs --model RUN_DIR|models:/NAME@ALIAS and IMAGE files")
    tracking_uri = None
    if args.model.startswith("models:/"):
        from renalmae.registry.connection import tracking_uri as registry_uri

        tracking_uri = registry_uri(params)
    out_dir = args.out or EXPLAIN_IMAGES_DIR
    return explain_images(args.model, args.images, out_dir, params.explain, tracking_uri=tracking_uri)


def cmd_register(args, params):
    return _step("register")(
        params,
        run_dirs=_run_dirs(args.runs),
        comparison_dir=args.comparison,
        validation_dir=args.validation,
        out_path=args.out,
    )


def _pipelines():
    """`pipelines/entrypoints.py` of the project checkout (it is not part of the installed package)."""
    candidates = [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]]
    root = next((c for c in candidates if (c / "pipelines" / "renal_pipeline.py").is_file()), None)
    if root is None:
        raise RenalMAEError(
            "pipelines/renal_pipeline.py not found; run `renalmae pipeline` inside the project checkout"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("pipelines.entrypoints")


def cmd_pipeline_compile(args, params):
    return _pipelines().compile_pipeline(args.output, data_pvc=args.data_pvc)


def cmd_pipeline_run(args, params):
    if not args.local:
        raise RenalMAEError(
            "`renalmae pipeline run` needs --local (use `renalmae pipeline submit` for a cluster)"
        )
    return _pipelines().run_local(args.params, pipeline_root=args.root)


def cmd_pipeline_submit(args, params):
    run = _pipelines().submit(
        host=args.host, experiment=args.experiment, version=args.version, params_path=args.params,
        namespace=args.namespace, package=args.package, wait=args.wait, timeout_s=args.timeout,
    )  # fmt: skip
    return f"run {run.run_id}: {run.url}" + (f" ({run.state})" if run.state else "")


def _add_pipeline_commands(commands) -> None:
    pipeline = commands.add_parser(
        "pipeline",
        help="the Kubeflow pipeline: compile it, run it locally (kfp.local) or submit it to a cluster",
        description="See docs/kubeflow.md. The pipeline's one argument is the text of the --params file.",
    )
    actions = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")
    compile_ = actions.add_parser("compile", help="compile the DAG to KFP pipeline YAML")
    compile_.add_argument("--output", type=Path, default=Path("pipelines/renal_pipeline.yaml"))
    compile_.add_argument(
        "--data-pvc", default=None, help="mount this PVC at /mnt/renalmae on the data-reading steps"
    )
    compile_.set_defaults(handler=cmd_pipeline_compile)
    run = actions.add_parser("run", help="run the whole DAG on this machine with kfp.local")
    run.add_argument("--local", action="store_true", help="run with kfp.local (SubprocessRunner)")
    run.add_argument(
        "--root", type=Path, default=Path("build/kfp-local"), help="pipeline root for task outputs"
    )
    run.set_defaults(handler=cmd_pipeline_run)
    submit = actions.add_parser(
        "submit",
        help="upload a pipeline version and start a run on a KFP API server",
        description="Token: $KF_PIPELINES_TOKEN (sent as a bearer token, never printed).",
    )
    submit.add_argument(
        "--host", required=True, help="KFP API URL, e.g. https://kubeflow.example.org/pipeline"
    )
    submit.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    submit.add_argument("--experiment", required=True)
    submit.add_argument("--version", required=True, help="pipeline version name, e.g. the git sha")
    submit.add_argument(
        "--package", type=Path, default=None, help="compiled YAML to upload (default: compile now)"
    )
    submit.add_argument(
        "--wait", action="store_true", help="wait for the run; exit non-zero unless it succeeds"
    )
    submit.add_argument("--timeout", type=int, default=24 * 3600, help="seconds to wait with --wait")
    submit.set_defaults(handler=cmd_pipeline_submit)
    for action in actions.choices.values():
        _add_common(action)


def cmd_promote(args, params):
    from renalmae.registry.connection import tracking_uri
    from renalmae.registry.promote import promote

    decision = promote(
        tracking_uri(params), args.model, args.version, params.registry, to_registry=args.to_registry
    )
    return json.dumps(decision, indent=2, sort_keys=True, default=str)


def cmd_predict(args, params):
    from renalmae.registry.connection import tracking_uri
    from renalmae.registry.serving import predict_files

    args.model = args.model or f"models:/{params.registry.model_prefix}-usfmae-binary@champion"
    table = predict_files(args.model, tracking_uri(params), args.images, params.data.max_image_pixels)
    if args.explain is not None:
        from renalmae.explain.images import explain_images

        explain_images(
            args.model, args.images, args.explain, params.explain, tracking_uri=tracking_uri(params)
        )
        print(f"Score-CAM overlays: {args.explain}", file=sys.stderr)
    if args.json:
        return table.to_json(orient="records", indent=2)
    return table.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)"
    )


def _add_training_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=["binary", "multiclass"])
    parser.add_argument("--fold", required=True, type=int, help="0-based fold index (< split.k_folds)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: models/<kind>/<task>/fold<k>)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renalmae",
        description="Ultrasound MAE pretraining and renal anomaly classification: "
        "ingest → validate → split → pretrain → finetune / baseline → compare → explain → register.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="STEP")

    ingest = commands.add_parser(
        "ingest",
        help="decode the input (folder, manifest CSV or phantom://) once into a table and a uint8 cache",
        description="Read the labelled source and unlabelled pools named in params `data`, check every file, "
        "and write table.parquet plus memory-mapped images.npy / masks.npy at the working resolution.",
    )
    ingest.add_argument("--out", type=Path, default=INGEST_DIR)
    ingest.set_defaults(handler=cmd_ingest)

    validate = commands.add_parser(
        "validate",
        help="run the great-expectations data suite; any failed rule stops the pipeline",
        description="Check labels, nulls, class sizes, duplicates, image sizes, blank images and groups; "
        "write the validation result and Data Docs to the report directory; exit non-zero naming "
        "failed rules.",
    )
    validate.add_argument("--ingest", type=Path, default=INGEST_DIR)
    validate.add_argument("--out", type=Path, default=VALIDATION_DIR)
    validate.set_defaults(handler=cmd_validate)

    split = commands.add_parser(
        "split",
        help="grouped, stratified k folds plus a holdout test set → splits.json",
        description="Draw (or take from the input) k grouped stratified folds and a grouped holdout test "
        "set; refuses a split in which a group crosses folds or the train/test line.",
    )
    split.add_argument("--ingest", type=Path, default=INGEST_DIR)
    split.add_argument("--validation", type=Path, default=VALIDATION_DIR)
    split.add_argument("--out", type=Path, default=SPLITS_FILE)
    split.set_defaults(handler=cmd_split)

    pretrain = commands.add_parser(
        "pretrain",
        help="masked-autoencoder pretraining of the ViT encoder on pool + training images",
        description="Pretrain the MAE on the unlabelled pools and the training part of the labelled set "
        "(never the holdout test); write encoder weights, loss curve and reconstructions.",
    )
    pretrain.add_argument("--ingest", type=Path, default=INGEST_DIR)
    pretrain.add_argument("--splits", type=Path, default=SPLITS_FILE)
    pretrain.add_argument("--out", type=Path, default=PRETRAIN_DIR)
    pretrain.set_defaults(handler=cmd_pretrain)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune the pretrained ViT on one fold of one task",
        description="Fine-tune the MAE-initialised ViT on one fold; write weights and predictions for the "
        "validation fold and the holdout test.",
    )
    finetune.add_argument("--ingest", type=Path, default=INGEST_DIR)
    finetune.add_argument("--splits", type=Path, default=SPLITS_FILE)
    finetune.add_argument("--encoder", type=Path, default=PRETRAIN_DIR)
    _add_training_target(finetune)
    finetune.set_defaults(handler=cmd_finetune)

    baseline = commands.add_parser(
        "baseline",
        help="train the DenseNet-169 baseline on one fold of one task",
        description="Train the CNN baseline with the same splits, loop and augmentation as finetune.",
    )
    baseline.add_argument("--ingest", type=Path, default=INGEST_DIR)
    baseline.add_argument("--splits", type=Path, default=SPLITS_FILE)
    _add_training_target(baseline)
    baseline.set_defaults(handler=cmd_baseline)

    compare = commands.add_parser(
        "compare",
        help="metrics and statistical comparison of USF-MAE vs DenseNet-169 → report",
        description="Compute metrics per model, task and fold and on the holdout; DeLong, McNemar, bootstrap "
        "CIs, Wilcoxon and Holm; write metrics.json, figures and an HTML report.",
    )
    compare.add_argument("--runs", type=Path, nargs="+", default=[FINETUNE_ROOT, BASELINE_ROOT])
    compare.add_argument("--out", type=Path, default=COMPARISON_DIR)
    compare.set_defaults(handler=cmd_compare)

    explain = commands.add_parser(
        "explain",
        help="Score-CAM explanations of holdout images and localisation against lesion masks",
        description="Score-CAM maps for a sample of holdout images per class and model, overlays, a grid "
        "figure, localisation.json and an HTML page.",
    )
    explain.add_argument("--ingest", type=Path, default=INGEST_DIR)
    explain.add_argument("--splits", type=Path, default=SPLITS_FILE)
    explain.add_argument("--runs", type=Path, nargs="+", default=[FINETUNE_ROOT, BASELINE_ROOT])
    explain.add_argument(
        "--out", type=Path, default=None,
        help=f"output directory (default: {EXPLAIN_DIR}, or {EXPLAIN_IMAGES_DIR} with --model)",
    )  # fmt: skip
    explain.add_argument(
        "--model", default=None,
        help="explain IMAGE files with this trained-model directory or models:/NAME@ALIAS URI instead",
    )  # fmt: skip
    explain.add_argument("images", type=Path, nargs="*", metavar="IMAGE", help="image files (with --model)")
    explain.set_defaults(handler=cmd_explain)

    register = commands.add_parser(
        "register",
        help="log the models to MLflow and register them as `challenger` versions",
        description="Log each fine-tuned ViT and baseline as an MLflow model with its preprocessing, "
        "register a version with lineage tags and set the `challenger` alias.",
    )
    register.add_argument("--runs", type=Path, nargs="+", default=[FINETUNE_ROOT, BASELINE_ROOT])
    register.add_argument("--comparison", type=Path, default=COMPARISON_DIR)
    register.add_argument("--validation", type=Path, default=VALIDATION_DIR)
    register.add_argument("--out", type=Path, default=REGISTERED_FILE)
    register.set_defaults(handler=cmd_register)

    promote = commands.add_parser(
        "promote",
        help="gate a registered version and move the `champion` alias to it if it passes",
        description="Gate: data validation passed, holdout AUC / F1 above registry.min_auc / min_f1, and not "
        "worse than the current champion (one-sided DeLong on the same holdout images at registry.alpha). "
        "Pass: `champion` moves and the decision is tagged on the version. "
        "Fail: nothing changes, exit non-zero.",
    )
    promote.add_argument("--model", required=True, help="registered model name, e.g. renal-usfmae-binary")
    promote.add_argument("--version", default=None, help="version to promote (default: the `challenger`)")
    promote.add_argument(
        "--to-registry",
        default=None,
        metavar="URI",
        help="also copy the promoted version to this registry (staging → production) as champion",
    )
    promote.set_defaults(handler=cmd_promote)

    predict = commands.add_parser(
        "predict",
        help="class probabilities of image files from a registered model",
        description="Load a registered model (fold ensemble with its preprocessing) and print one row "
        "of class probabilities per image.",
    )
    predict.add_argument(
        "--model",
        default=None,
        help="models:/NAME@ALIAS or models:/NAME/VERSION (default: models:/<prefix>-usfmae-binary@champion)",
    )
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG, JPEG or DICOM files")
    predict.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    predict.add_argument(
        "--explain", type=Path, default=None, metavar="OUT_DIR",
        help="also write Score-CAM overlays of the predicted class (first fold model) to OUT_DIR",
    )  # fmt: skip
    predict.set_defaults(handler=cmd_predict)

    for parser_of_command in commands.choices.values():
        _add_common(parser_of_command)
    _add_pipeline_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        result = args.handler(args, params)
    except RenalMAEError as error:
        print(f"renalmae {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
