"""`python -m pipelines compile | run --local | submit`: the Kubeflow DAG of this checkout, compiled to KFP
YAML, run on this machine with kfp.local, or submitted to a KFP API server (`pipelines/entrypoints.py`).

Run it from the project checkout: `pipelines/` and `components/` are plain folders beside the package,
and the installed `renalmae` command never imports them. The pipeline's one argument is the text of the
`--params` file. See docs/kubeflow.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines import entrypoints
from renalmae.cli import log_to_stderr
from renalmae.errors import ParamsError, RenalMAEError

PROG = "python -m pipelines"


def cmd_compile(args) -> Path:
    if args.ingest_parts < 1:
        raise ParamsError(f"--ingest-parts must be at least 1 (got {args.ingest_parts})")
    return entrypoints.compile_pipeline(args.output, data_pvc=args.data_pvc, ingest_parts=args.ingest_parts)


def cmd_run(args) -> Path:
    if not args.local:
        raise RenalMAEError(f"`{PROG} run` needs --local (use `{PROG} submit` for a cluster)")
    return entrypoints.run_local(args.params, pipeline_root=args.root)


def cmd_submit(args) -> str:
    run = entrypoints.submit(
        host=args.host, experiment=args.experiment, version=args.version, params_path=args.params,
        namespace=args.namespace, package=args.package, wait=args.wait, timeout_s=args.timeout,
    )  # fmt: skip
    return f"run {run.run_id}: {run.url}" + (f" ({run.state})" if run.state else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    actions = parser.add_subparsers(dest="command", required=True, metavar="ACTION")
    compile_ = actions.add_parser("compile", help="compile the DAG to KFP pipeline YAML")
    compile_.add_argument("--output", type=Path, default=entrypoints.COMPILED_PIPELINE)
    compile_.add_argument(
        "--data-pvc", default=None, help="mount this PVC at /mnt/renalmae on the data readers"
    )
    compile_.add_argument("--ingest-parts", type=int, default=1, help="decode the inputs in this many pods")
    compile_.set_defaults(handler=cmd_compile)
    run = actions.add_parser("run", help="run the whole DAG on this machine with kfp.local")
    run.add_argument("--local", action="store_true", help="run with kfp.local (SubprocessRunner)")
    run.add_argument(
        "--root", type=Path, default=Path("build/kfp-local"), help="pipeline root for task outputs"
    )
    run.set_defaults(handler=cmd_run)
    submit = actions.add_parser(
        "submit", help="upload a pipeline version and start a run on a KFP API server",
        description="Token: $KF_PIPELINES_TOKEN (sent as a bearer token, never printed).",
    )  # fmt: skip
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
    submit.set_defaults(handler=cmd_submit)
    for action in (run, submit):
        action.add_argument("--params", type=Path, default=Path("params.yaml"), help="default: params.yaml")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stderr()
    try:
        result = args.handler(args)
    except RenalMAEError as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
