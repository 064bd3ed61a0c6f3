"""The `renalmae` command line: one subcommand per pipeline step, made from its declaration
(`renalmae.pipeline`), plus the registry tools and `dvc-yaml`. (The Kubeflow DAG is compiled, run and
submitted from the project checkout: `python -m pipelines`.)

A step's options are its declared inputs (each artifact's option, defaulting to where `dvc.yaml` keeps
it), `--task` / `--fold` / `--repeat` for the training steps (default: every one of the params), and
`--out`. Only the step that runs is imported (a step pulls in torch, MLflow or great-expectations).
Every subcommand loads `--params` once and calls the step function; a `RenalMAEError` is printed as one
line and exits non-zero, anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from renalmae import launch, pipeline
from renalmae.errors import ParamsError, RenalMAEError
from renalmae.params import load_params

TASKS = ("binary", "multiclass")
EXPLAIN_IMAGES_DIR = Path("reports/explain-images")


def add_step_arguments(parser: argparse.ArgumentParser, step: pipeline.Step) -> None:
    """The options of a step, from its declaration."""
    for declared in step.inputs:
        artifact = declared.artifact
        if declared.many:
            roots = [artifact.path_for(producer) for producer in declared.producers]
            parser.add_argument(
                artifact.option, dest=declared.argument, type=Path, nargs="+", default=list(map(Path, roots)),
                help=f"run folders, or folders holding them (default: {' '.join(roots)})",
            )  # fmt: skip
        else:
            parser.add_argument(
                artifact.option, dest=declared.argument, type=Path, default=Path(artifact.path_for()),
                help=f"{artifact.__doc__.splitlines()[0].rstrip('.')} (default: {artifact.path_for()})",
            )  # fmt: skip
    if step.fans_out:
        parser.add_argument("--task", choices=TASKS, help="only this task (default: every finetune.tasks)")
        parser.add_argument("--fold", type=int, help="only this 0-based fold (default: every split.folds)")
        parser.add_argument("--repeat", type=int, help="only this repeat (default: 0 … evaluate.repeats - 1)")
    default_out = step.output.artifact.path_for(step.name)
    parser.add_argument(
        "--out", dest=step.output.argument, type=Path, default=None,
        help=f"output (default: {default_out})",
    )  # fmt: skip


def run_step(args: argparse.Namespace, params) -> str:
    """Call the step's `run()` with the parsed options (under torchrun when its params ask for several
    processes: `renalmae.launch`); return the line that says where its output is."""
    step = pipeline.step(args.command)
    arguments = {declared.argument: getattr(args, declared.argument) for declared in step.inputs}
    target = {key: getattr(args, key) for key in ("task", "fold", "repeat")} if step.fans_out else {}
    out = getattr(args, step.output.argument) or Path(step.output.artifact.path_for(step.name))
    context = launch.cli_run_context(step.name) if step.tracked else None
    launch.run_step(pipeline.load(step.name), params, arguments, target, out, context)
    return f"{step.name}: wrote {out}"


def _add_step_commands(commands) -> None:
    for step in pipeline.STEPS.values():
        parser = commands.add_parser(step.name, help=step.summary, description=f"{step.summary}.")
        parser.set_defaults(handler=run_step)
        add_step_arguments(parser, step)
        if step.name == "explain":
            _add_explain_files(parser)


def _add_explain_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None,
        help="explain IMAGE files with this trained-model directory or models:/NAME@ALIAS URI instead "
        f"(default output: {EXPLAIN_IMAGES_DIR})",
    )  # fmt: skip
    parser.add_argument("images", type=Path, nargs="*", metavar="IMAGE", help="image files (with --model)")
    parser.set_defaults(handler=cmd_explain)


def cmd_explain(args, params):
    if args.model is not None or args.images:
        return _explain_files(args, params)
    return run_step(args, params)


def _explain_files(args, params):
    """`renalmae explain --model RUN_DIR|models:/… IMAGE…`: Score-CAM of the predicted class of each file."""
    from renalmae.explain.images import explain_images

    if args.model is None or not args.images:
        raise ParamsError("explaining image files needs --model RUN_DIR|models:/NAME@ALIAS and IMAGE files")
    tracking_uri = None
    if args.model.startswith("models:/"):
        from renalmae.registry.connection import tracking_uri as registry_uri

        tracking_uri = registry_uri(params)
    out_dir = args.out_dir or EXPLAIN_IMAGES_DIR
    return explain_images(
        args.model, args.images, out_dir, params.explain, tracking_uri=tracking_uri,
        cpu_threads=params.train.cpu_threads,
    )  # fmt: skip


def cmd_dvc_yaml(args, params):
    from renalmae.dvc_yaml import write_dvc_yaml

    return f"wrote {write_dvc_yaml(args.output, params)}"


def cmd_promote(args, params):
    from renalmae.registry.connection import tracking_uri
    from renalmae.registry.promote import promote

    decision = promote(
        tracking_uri(params), args.model, args.version, params.registry, to_registry=args.to_registry
    )
    return json.dumps(decision, indent=2, sort_keys=True, default=str)


def cmd_rollback(args, params):
    from renalmae.registry.connection import tracking_uri
    from renalmae.registry.promote import rollback

    return json.dumps(rollback(tracking_uri(params), args.model, args.version), indent=2, sort_keys=True)


def cmd_audit(args, params):
    from renalmae.registry.audit import audit_registry, audit_table, refuse_flagged
    from renalmae.registry.connection import tracking_uri

    records = audit_registry(tracking_uri(params), args.model)
    print(audit_table(records))
    refuse_flagged(records, tracking_uri(params))


def cmd_predict(args, params):
    from renalmae.registry.connection import tracking_uri
    from renalmae.registry.serving import load_ensemble, predict_files

    args.model = args.model or default_model_uri(params)
    ensemble = load_ensemble(args.model, tracking_uri(params))
    rule = None
    if args.site is not None:
        from renalmae.registry.site_rules import site_rule_for

        rule = site_rule_for(args.model, tracking_uri(params), args.site)
        print(f"site {args.site}: {rule.name} ({rule.chosen_on})", file=sys.stderr)
    table = predict_files(ensemble, None, args.images, params.data.max_image_pixels, rule)
    if args.explain is not None:
        from renalmae.explain.images import explain_images

        explain_images(
            ensemble, args.images, args.explain, params.explain, cpu_threads=params.train.cpu_threads,
            model_name=args.model,
        )  # fmt: skip
        print(f"Score-CAM overlays: {args.explain}", file=sys.stderr)
    if args.json:
        return table.to_json(orient="records", indent=2)
    return table.to_string(index=False, float_format=lambda value: f"{value:.4f}")


def cmd_site_rule(args, params):
    from renalmae.registry.connection import tracking_uri
    from renalmae.registry.site_rules import choose_site_rule

    model = args.model or default_model_uri(params)
    rule = choose_site_rule(
        model, tracking_uri(params), args.site, args.sample, params.data, params.evaluate,
        params.data.max_image_pixels,
    )  # fmt: skip
    sensitivity = rule["sensitivity"]
    return (
        f"site {rule['site']}: P(anomaly) >= {rule['threshold']:.3f} recorded on {rule['model']} "
        f"v{rule['version']}, chosen on {rule['n']} images ({rule['anomalous']} anomalous, {rule['normal']} "
        f"normal, {rule['clusters']} patients / series); sensitivity there {sensitivity['estimate']:.2f} "
        f"({rule['confidence']:.0%} CI {sensitivity['low']:.2f} to {sensitivity['high']:.2f}, measured on "
        f"the same images: optimistic). Use it with `renalmae predict --site {rule['site']}`."
    )


def default_model_uri(params) -> str:
    """The model `predict` and `site-rule` use when `--model` is not given: the binary champion."""
    return f"models:/{params.registry.model_prefix}-{pipeline.CANDIDATE_MODEL}-binary@champion"


def _add_model_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None,
        help="models:/NAME@ALIAS or models:/NAME/VERSION (default: <prefix>-<candidate>-binary@champion)",
    )  # fmt: skip


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renalmae",
        description="Ultrasound MAE pretraining and renal anomaly classification: "
        f"{' → '.join(pipeline.PIPELINE)}.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="STEP")
    _add_step_commands(commands)
    promote = commands.add_parser(
        "promote",
        help="gate a registered version and move the `champion` alias to it if it passes",
        description="Gate: data validation passed, holdout AUC / F1 above registry.min_auc / min_f1, and not "
        "worse than the current champion (one-sided DeLong on the same holdout images at registry.alpha). "
        "Pass: `champion` moves and the decision is tagged on the version. "
        "Fail: nothing changes, exit non-zero.",
    )
    promote.add_argument("--model", required=True, help="registered model name, e.g. renal-<model>-binary")
    promote.add_argument("--version", default=None, help="version to promote (default: the `challenger`)")
    promote.add_argument(
        "--to-registry",
        default=None,
        metavar="URI",
        help="also copy the promoted version to this registry (staging → production) as champion",
    )
    promote.set_defaults(handler=cmd_promote)
    rollback = commands.add_parser(
        "rollback",
        help="move `champion` back to a version that passed the gate before (recorded like a promotion)",
    )
    rollback.add_argument("--model", required=True, help="registered model name, e.g. renal-usfmae-binary")
    rollback.add_argument("--version", default=None, help="default: the champion the current one replaced")
    rollback.set_defaults(handler=cmd_rollback)
    audit = commands.add_parser(
        "audit",
        help="list every alias with its evidence (gate decision, recorded move); fail if any lacks it",
    )
    audit.add_argument("--model", default=None, help="only this registered model (default: all)")
    audit.set_defaults(handler=cmd_audit)

    predict = commands.add_parser(
        "predict",
        help="class probabilities of image files from a registered model",
        description="Load a registered model (fold ensemble with its preprocessing) and print one row "
        "of class probabilities per image.",
    )
    _add_model_uri(predict)
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG, JPEG or DICOM files")
    predict.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    predict.add_argument(
        "--explain", type=Path, default=None, metavar="OUT_DIR",
        help="also write Score-CAM overlays of the predicted class (the same fold ensemble) to OUT_DIR",
    )  # fmt: skip
    predict.add_argument(
        "--site", default=None,
        help="label at the rule recorded for this site (`renalmae site-rule`) instead of the version's own",
    )  # fmt: skip
    predict.set_defaults(handler=cmd_predict)
    site_rule = commands.add_parser(
        "site-rule",
        help="choose a binary decision rule for a new site on its labelled sample; record it on the version",
        description="Predict the site's labelled sample (a manifest: image,label[,patient_id|series_id]) "
        "with the version, choose the threshold there (evaluate.threshold) and record it, with the "
        "sample's size and the sensitivity / specificity it reaches (cluster-bootstrap intervals), on the "
        "version as that site's rule. `renalmae predict --site SITE` applies it.",
    )
    site_rule.add_argument("--site", required=True, help="the site's name (letters, digits, - _ .)")
    _add_model_uri(site_rule)
    site_rule.add_argument(
        "sample", type=Path, metavar="SAMPLE", help="manifest CSV of the site's labelled images"
    )
    site_rule.set_defaults(handler=cmd_site_rule)

    for parser_of_command in commands.choices.values():
        _add_common(parser_of_command)
    dvc_yaml = commands.add_parser(
        "dvc-yaml",
        help="write dvc.yaml from the pipeline declaration (renalmae.pipeline)",
        description="Stages, params keys, outputs and code deps (each step's import closure) of dvc.yaml.",
    )
    dvc_yaml.add_argument("--output", type=Path, default=Path("dvc.yaml"), help="default: dvc.yaml")
    dvc_yaml.set_defaults(handler=cmd_dvc_yaml)
    _add_common(dvc_yaml)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged (a test harness swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def log_to_stderr() -> None:
    """The library's INFO lines (threads chosen, checkpoint resumed, data summary) on stderr; not others'."""
    logger = logging.getLogger("renalmae")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # MLflow's own INFO lines (database set-up, input-example validation) and its artifact download bars
    # say nothing a user of a step can act on; its warnings still show.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    log_to_stderr()
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
