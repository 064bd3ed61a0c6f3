"""Where the default run's time goes: each DVC stage's wall time, split into process start and work.

Copies `dvc.yaml`, the params and `src/` into a scratch git + DVC repository and runs there what `make run`
runs, `dvc repro`, with a `renalmae` first on PATH that times itself: when the process was launched, how
long it spent importing (every module it imported, torch / timm / mlflow / great-expectations / kfp
included, wherever the import statement sits) and the rest, the step's work. Then runs the same a second
time with nothing changed. Prints one row per stage, the totals and DVC's own share (hashing, locks,
caching: the repro's wall time less its stages'); exits 0.

    python benchmarks/default_run.py                 # params.yaml: the default `make run` (minutes)
    python benchmarks/default_run.py --tiny          # tests/e2e/params-e2e.yaml (what make benchmarks runs)
    python benchmarks/default_run.py --params P --keep DIR

Figures are wall-clock seconds on this machine as it is: the header prints the cores available and the
load average, which say whether they can be compared with another run (docs/performance.md).
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_PARAMS = REPO / "tests" / "e2e" / "params-e2e.yaml"
BIN = Path(sys.executable).parent
HEAVY = ["torch", "timm", "torchvision", "mlflow", "great_expectations", "kfp", "sklearn", "matplotlib"]


def timed_cli(log_path: Path, launched: float, argv: list[str]) -> int:
    """Run `renalmae <argv>` in this process, appending its timing as one JSON line to `log_path`."""
    import_seconds = import_cpu_seconds = 0.0
    depth = 0
    plain_import, import_module = builtins.__import__, importlib.import_module

    def timed(function):
        def wrapper(*args, **kwargs):
            nonlocal import_seconds, import_cpu_seconds, depth
            depth += 1
            started, started_cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                depth -= 1
                if depth == 0:
                    import_seconds += time.perf_counter() - started
                    import_cpu_seconds += time.process_time() - started_cpu

        return wrapper

    builtins.__import__, importlib.import_module = timed(plain_import), timed(import_module)
    started_main = time.time()
    code = 1
    try:
        from renalmae.cli import main

        code = main(argv)
    finally:
        builtins.__import__, importlib.import_module = plain_import, import_module
        ended = time.time()
        record = {
            "argv": argv,
            "interpreter": started_main - launched,
            "imports": import_seconds,
            "total": ended - launched,
            "import_cpu": import_cpu_seconds,
            "cpu": time.process_time(),
            "heavy": [name for name in HEAVY if name in sys.modules],
            "exit": code,
        }
        with open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
    return code


def stage_label(argv: list[str]) -> str:
    return argv[0]


def scratch_repository(root: Path, params: Path, timing_log: Path) -> dict[str, str]:
    """A git + DVC repository at `root` holding the pipeline; returns the environment `dvc repro` runs in.

    Tracking is switched on in the copied params where it is off (the e2e params): `register` needs it.
    """
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    raw = yaml.safe_load(params.read_text())
    if not raw["tracking"]["enabled"]:
        raw["tracking"]["enabled"] = True
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    else:
        shutil.copy(params, root / "params.yaml")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shim_dir = root / ".timing-bin"
    shim_dir.mkdir()
    shim = shim_dir / "renalmae"
    shim.write_text(
        "#!/bin/sh\n"
        f'exec "{sys.executable}" "{Path(__file__).resolve()}" --as-renalmae "{timing_log}" '
        '"$(date +%s.%N)" "$@"\n'
    )
    shim.chmod(0o755)
    (root / ".gitignore").write_text(".timing-bin/\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["PATH"] = f"{shim_dir}:{BIN}:{env.get('PATH', '')}"
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    return env


def repro(root: Path, env: dict[str, str]) -> tuple[float, str]:
    command = [str(BIN / "dvc"), "repro"]
    started = time.time()
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.time() - started
    if result.returncode != 0:
        sys.stdout.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"dvc repro failed (exit {result.returncode}) in {root}")
    return seconds, result.stdout


def row(label: str, wall: float, start: float, cpu: float, start_cpu: float, note: str = "") -> str:
    figures = (wall, start, wall - start, cpu, start_cpu, cpu - start_cpu)
    return f"{label:<22}{''.join(f'{figure:>8.1f}' for figure in figures)}  {note}"


def table(records: list[dict], repro_seconds: float) -> str:
    """Wall and CPU seconds per stage: all, process start (interpreter + imports), work."""
    columns = ("wall s", "start", "work", "cpu s", "start", "work")
    header = f"{'':<22}{''.join(f'{column:>8}' for column in columns)}  heavy imports"
    lines = [header, "-" * len(header)]
    totals = [0.0, 0.0, 0.0, 0.0]
    for record in records:
        start = record["interpreter"] + record["imports"]
        values = [record["total"], start, record["cpu"], record["import_cpu"]]
        totals = [total + value for total, value in zip(totals, values, strict=True)]
        lines.append(row(stage_label(record["argv"]), *values, ", ".join(record["heavy"]) or "-"))
    lines += [
        "-" * len(header),
        row(f"{len(records)} stages", *totals),
        f"{'dvc itself':<22}{repro_seconds - totals[0]:>8.1f}   (hashing, locks, cache: the rest)",
        f"{'dvc repro':<22}{repro_seconds:>8.1f}   = {repro_seconds / 60:.1f} min",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--as-renalmae"]:
        return timed_cli(Path(argv[1]), float(argv[2]), argv[3:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help=f"{TINY_PARAMS.relative_to(REPO)} (seconds)")
    parser.add_argument("--params", type=Path, default=None, help="default: params.yaml (--tiny: e2e params)")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    args = parser.parse_args(argv)
    params = args.params or (TINY_PARAMS if args.tiny else REPO / "params.yaml")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"default run (dvc repro) of {params.name}: {cores} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    with tempfile.TemporaryDirectory(prefix="default-run-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        timing_log = root / ".timing-bin.jsonl"
        env = scratch_repository(root, params, timing_log)
        first_seconds, _ = repro(root, env)
        records = [json.loads(line) for line in timing_log.read_text().splitlines()]
        print(table(records, first_seconds))
        second_seconds, second_output = repro(root, env)
        up_to_date = "Data and pipelines are up to date." in second_output
        reran = len(timing_log.read_text().splitlines()) - len(records)
        print(
            f"second dvc repro, nothing changed: {second_seconds:.1f} s, {reran} stage(s) rerun, "
            f"{'says' if up_to_date else 'does NOT say'} 'Data and pipelines are up to date.'"
        )
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
