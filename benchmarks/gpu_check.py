"""The paper's path on one GPU, in one prepared run of at most 9 minutes (issue 29).

Four parts, in this order, each under its own time cap (`CAPS_S`) and all under one deadline (`--budget-s`,
540 s); a part that does not finish keeps what it measured, and summary.json says what was skipped and why:

* `throughput-eager`: `benchmarks/throughput.py` at the paper's sizes (MAE pretraining of ViT-B/16 at 224 px,
  mask 0.75, decoder 512 x 8; ViT-B/16 fine-tuning; DenseNet-169), ours against the reference recipe in the
  same run: images/s, peak GPU memory and the ratio of each;
* `kidney-external`: `profiles/kidney-external.yaml` at its full budget with `train.device: cuda` through the
  pipeline's steps: pretrain, finetune and baseline for every task and fold, then compare (which runs on the
  CPU in any case): the holdout and external-set AUCs of both models, and each step's seconds;
* `gpu-vit`: `profiles/gpu.yaml`'s ViT-B/16 at 224 px through pretrain from scratch (no checkpoint can be
  fetched there) and one fine-tuning fold on the same data, eager; `GPU_VIT_BUDGET` states what differs
  from the profile;
* `throughput-compile`: the throughput benchmark again with `torch.compile`, in the time that is left.

The device machine receives the repository and what `carry` names, 64 MiB in all, and its python3 lacks
great-expectations (validate) and pydantic (params). So the CPU steps run here first, once:

    python benchmarks/gpu_check.py --prepare

ingests, validates and splits both parts' data with the pipeline's own steps into build/gpu-check/<part>/
(the kidney frames from ../shared/data at the profile's 64 px; the GPU profile's 969-image phantom at
224 px), downloads the wheels the device image lacks (`DEVICE_WHEELS`, versions from
requirements/runtime.lock, as the device README says) and packs it all into build/gpu-check.tar.gz (~53 MiB;
build/ is ignored by git). Then, from the project root, the device tool's call is:

    run(command="PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py", carry=["build/gpu-check.tar.gz"],
        timeout_s=600)

On the device the script unpacks the archive, installs the wheels into /tmp/site when an import is missing
and puts that and src/ on the steps' PYTHONPATH (the package is not installed there). MLflow tracking is off
(`tracking.enabled: false`). Every step is invoked through the `renalmae` CLI in the part's working folder
(`step_argv`); `dvc repro` is not used because DVC and its dependencies are not on the device.

Everything lands under `$OUT` (default ./gpu-check-out) as at most 8 flat files, the device tool's limit:
summary.json (every figure, or the reason it is missing), gpu_check.log, one log per part, and
reports.tar.gz (every figure, report, metrics file, history and prediction table the steps wrote; no
weights).

`--tiny` runs the same code on the CPU: the tiny profile (params.yaml) for `kidney-external` and the GPU
profile at the tiny sizes for `gpu-vit`, both on a 200-image phantom at 32 px prepared into a temporary
folder; the throughput run measures MAE pretraining only, the compiled run is skipped (reasons recorded),
and the baseline is `resnet10t` (DenseNet-169 takes minutes on two cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).absolute().parents[1]  # not resolved: ../shared is beside this checkout's path
SRC = ROOT / "src"
PREPARED = ROOT / "build" / "gpu-check"
SITE = Path("/tmp/site")
PARTS = ("throughput-eager", "kidney-external", "gpu-vit", "throughput-compile")  # the order they run in
PIPELINE_PARTS = ("kidney-external", "gpu-vit")
WORKLOADS = ("mae", "vit", "cnn")
DEVICE_BUDGET_S, TINY_BUDGET_S = 540, 150
CAPS_S = {"throughput-eager": 100, "kidney-external": 180, "gpu-vit": 110, "throughput-compile": None}
TINY_CAPS_S = {"throughput-eager": 40, "kidney-external": 70, "gpu-vit": 35, "throughput-compile": None}
RESERVE_S = 15  # kept for the summary and the archive after the last part
CARRY_LIMIT_BYTES = 64 * 2**20  # the device tool's limit for the tree and what it carries

NEEDED_MODULES = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "sklearn", "scipy",
                  "matplotlib", "yaml", "PIL", "safetensors", "tqdm", "pydantic")  # fmt: skip
DEVICE_WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")
"""What the training steps import that the device image lacks (its KINDS.md package list)."""
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
ARCHIVED = {".json", ".csv", ".png", ".md", ".html", ".parquet", ".txt", ".log", ".yaml"}
ARCHIVE_LIMIT_BYTES = 15 * 2**20  # the device tool returns files of at most 16 MiB

GPU_VIT_BUDGET = {  # on top of profiles/gpu.yaml
    # its 969-image phantom, without the 20,000-image pool (1 GB at 224 px cannot travel): MAE pretrains on
    # the development images (transductive, as include_development allows), from scratch, for the
    # profile's 100 epochs (~1,200 steps); eager, since throughput-compile measures compiled speed
    "data": {"pool": []},
    "pretrain": {"include_development": True, "init_checkpoint": None, "init_checkpoint_data": None},
    "train": {"compile": False},
}
TINY_SIZES = {  # --tiny: 32 px, tiny ViT, a 200-image phantom, one epoch, 2 folds, the CPU
    "data": {"source": "phantom://renal?n=200&seed=0", "pool": ["phantom://renal?n=20&seed=1&unlabelled=true"],
             "image_size": 32, "decode_workers": 0},
    "encoder": {"arch": "vit_tiny_patch16_224", "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3},
    "mae": {"decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4},
    "split": {"folds": [0, 1]},
    "pretrain": {"epochs": 1, "batch_size": 16},
    "finetune": {"tasks": ["binary"], "epochs": 1, "batch_size": 16},
    "baseline": {"arch": "resnet10t", "epochs": 1, "batch_size": 16},
    "evaluate": {"bootstrap_resamples": 100},
    "train": {"device": "cpu", "cpu_threads": 1},
}  # fmt: skip


# --- how a step is invoked: the one place that knows the CLI's wiring ----------------------------------


def step_argv(step: str, params_file: Path, task: str | None = None, fold: int | None = None) -> list[str]:
    """The `renalmae` CLI arguments of one step run in its working folder.

    Inputs and output stay at the CLI's defaults (where dvc.yaml keeps them, relative to the folder), so
    only the step, the params file and, for a per-fold step, the task and fold are named here.
    """
    argv = [step, "--params", str(params_file)]
    if task is not None:
        argv += ["--task", task, "--fold", str(fold)]
    return argv


Target = tuple[str, str | None, int | None]  # (step, task, fold)


def plan(part: str, params: dict) -> list[list[Target]]:
    """The stages of a part, in order; the steps of one stage run at once (the folds, as Kubeflow's
    ParallelFor runs them). `prepare` is the steps that run here."""
    if part == "prepare":
        return [[("ingest", None, None)], [("validate", None, None)], [("split", None, None)]]
    tasks, folds = params["finetune"]["tasks"], params["split"]["folds"]
    if part == "gpu-vit":
        return [[("pretrain", None, None)], [("finetune", tasks[0], folds[0])]]
    targets = [(task, fold) for task in tasks for fold in folds]
    return [
        [("pretrain", None, None)],
        [(step, task, fold) for step in ("finetune", "baseline") for task, fold in targets],
        [("compare", None, None)],
    ]


def target_name(target: Target) -> str:
    return "-".join(str(item) for item in target if item is not None)


def run_steps_here(workdir: Path, part: str) -> int:
    """Run a part's steps one after another through the CLI in this process, in `workdir`; the first
    failing step's exit status, or 0."""
    from renalmae import cli

    params_file = workdir / "params.yaml"
    with contextlib.chdir(workdir):
        for stage in plan(part, yaml.safe_load(params_file.read_text())):
            for target in stage:
                status = cli.main(step_argv(target[0], params_file, *target[1:]))
                if status != 0:
                    return status
    return 0


# --- here: prepare what the device cannot make ---------------------------------------------------------


def part_params(part: str, tiny: bool) -> dict:
    """The validated params of a pipeline part, as written to its working folder."""
    from renalmae.params import load_params, params_from_dict

    profile = {"kidney-external": "params.yaml" if tiny else "profiles/kidney-external.yaml",
               "gpu-vit": "profiles/gpu.yaml"}[part]  # fmt: skip
    raw = load_params(ROOT / profile).to_dict()
    overrides = (
        {"tracking": {"enabled": False}, "train": {"device": "cuda", "progress": False}},
        GPU_VIT_BUDGET if part == "gpu-vit" else {},
        TINY_SIZES if tiny else {},
    )
    for override in overrides:
        for section, values in override.items():
            raw[section].update(values)
    data = raw["data"]  # the profiles' relative paths are the project root's; the steps run in a subfolder
    data["source"] = project_path(data["source"])
    data["pool"] = [project_path(pool) for pool in data["pool"]]
    return params_from_dict(raw, source=f"{profile} for {part}").to_dict()


def project_path(source: str) -> str:
    return source if "://" in source else os.path.normpath(ROOT / source)


def prepare(prepared: Path, tiny: bool) -> dict:
    """Ingest, validate and split each pipeline part's data into prepared/<part>/ (replacing an earlier
    preparation there) with the CLI; each step's output goes to <part>/prepare.log."""
    facts: dict = {"parts": {}}
    for part in PIPELINE_PARTS:
        workdir = prepared / part
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        params = part_params(part, tiny)
        (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        log = workdir / "prepare.log"
        with log.open("w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            status = run_steps_here(workdir, "prepare")
        if status != 0:
            raise SystemExit(
                f"gpu_check: preparing {part} stopped (exit {status}):\n{log.read_text()[-3000:]}"
            )
        ingested = json.loads((workdir / "data/ingested/ingest.json").read_text())
        facts["parts"][part] = {
            "data": params["data"]["source"],
            **{key: ingested.get(key) for key in ("image_size", "n_images", "labelled", "pool")},
            "dropped_duplicates": len(ingested.get("dropped_duplicates", [])),
        }
    if not tiny:
        shutil.rmtree(prepared / "wheels", ignore_errors=True)  # one version of each, or pip refuses them all
        facts["wheels"] = download_wheels(prepared / "wheels")
    facts["git_commit"] = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (prepared / "prepared.json").write_text(json.dumps(facts, indent=2, default=str))
    return facts


def download_wheels(directory: Path) -> list[str]:
    """The wheels of `DEVICE_WHEELS` for the device's Python 3.12 (x86-64), at the runtime lock's versions."""
    lock = (ROOT / "requirements/runtime.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.M))
    platforms = [flag for name in WHEEL_PLATFORMS for flag in ("--platform", name)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
         "3.12", "--implementation", "cp", *platforms, "-d", str(directory),
         *[f"{name}=={pins[name]}" for name in DEVICE_WHEELS]],
        check=True,
    )  # fmt: skip
    return sorted(path.name for path in directory.glob("*.whl"))


def pack(prepared: Path) -> Path:
    """prepared.tar.gz: the working folders and wheels, without resumable shards and checkpoints."""
    packed = prepared.with_name(prepared.name + ".tar.gz")
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(
            prepared, arcname=prepared.name, filter=lambda info: None if ".checkpoints" in info.name else info
        )
    return packed


def tree_bytes() -> int:
    """Bytes of the files git tracks: what the device tool sends besides `carry`."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True).stdout
    return sum(
        (ROOT / name).stat().st_size for name in listed.split("\0") if name and (ROOT / name).is_file()
    )


# --- on the device ---------------------------------------------------------------------------------------


def environment(prepared: Path) -> tuple[dict, dict]:
    """(facts about this machine, the environment for the parts), installing the carried wheels if needed."""
    import importlib.util

    missing = [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]
    facts: dict = {"python": platform.python_version(), "missing_modules": missing}
    paths = [str(SRC)]
    wheels = sorted((prepared / "wheels").glob("*.whl"))
    if missing and wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, wheels)],
            check=True,
        )  # fmt: skip
        paths.insert(0, str(SITE))
        facts["installed_wheels"] = [wheel.name for wheel in wheels]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    probe = (
        "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
        "'cuda': c, 'device': torch.cuda.get_device_name() if c else 'CPU', 'runtime': torch.version.cuda}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    facts.update(
        json.loads(result.stdout) if result.returncode == 0 else {"probe_error": result.stderr[-2000:]}
    )
    return facts, env


def run_bounded(
    commands: list[tuple[list[str], Path, Path]], env: dict, deadline: float
) -> list[tuple[str, float]]:
    """Run (argv, cwd, log) commands at once, each in its own process group with its output in its log,
    until they end or the monotonic `deadline` passes; ("ok" | "failed" | "timed_out", seconds) of each."""
    started = time.monotonic()
    processes = []
    for argv, cwd, log in commands:
        with log.open("a") as stream:
            processes.append(subprocess.Popen(argv, cwd=cwd, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                              start_new_session=True))  # fmt: skip
    ended: dict[int, float] = {}
    while len(ended) < len(processes) and time.monotonic() < deadline:
        ended.update({index: time.monotonic() for index, process in enumerate(processes)
                      if index not in ended and process.poll() is not None})  # fmt: skip
        time.sleep(0.2)
    results = []
    for index, process in enumerate(processes):
        if index in ended:
            results.append(("ok" if process.returncode == 0 else "failed", round(ended[index] - started, 1)))
        else:
            os.killpg(process.pid, signal.SIGKILL)  # the step and any loader workers it started
            process.wait()
            results.append(("timed_out", round(time.monotonic() - started, 1)))
    return results


def not_reached(status: str, timeout_s: float) -> str:
    if status == "timed_out":
        return f"not reached within the part's {timeout_s:.0f} s"
    return "not reached: the part failed first (see its log)" if status == "failed" else "not run"


def throughput_part(
    compiled: bool, tiny: bool, env: dict, log: Path, scratch: Path, timeout_s: float
) -> dict:
    """benchmarks/throughput.py in a child process: each workload it finished, each other one's reason."""
    results_file = scratch / f"throughput-{'compile' if compiled else 'eager'}.json"
    workloads = ("mae",) if tiny else WORKLOADS
    argv = [sys.executable, str(ROOT / "benchmarks/throughput.py"), "--json", str(results_file),
            "--workloads", ",".join(workloads), *(["--compile"] if compiled else []),
            *(["--tiny", "--images", "64"] if tiny else ["--images", "4096"])]  # fmt: skip
    [(status, seconds)] = run_bounded([(argv, ROOT, log)], env, time.monotonic() + timeout_s)
    measured = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results = measured.get("results", {})
    skipped = {
        kind: not_reached(status, timeout_s)
        if kind in workloads
        else "tiny: MAE pretraining alone shows the path"
        for kind in WORKLOADS
        if kind not in results
    }
    return {"status": status, "seconds": seconds, "device": measured.get("device"), "results": results,
            "figures": dict(flatten(results)), "skipped": skipped}  # fmt: skip


def pipeline_part(part: str, prepared: Path, env: dict, log: Path, timeout_s: float) -> dict:
    """A pipeline part's steps, each a `renalmae` CLI process, stage by stage: each step's status and
    seconds, the metrics the steps wrote, and why each step not finished did not run."""
    started, workdir = time.monotonic(), prepared / part
    deadline = started + timeout_s
    params_file, logs = workdir / "params.yaml", workdir / "logs"
    logs.mkdir(exist_ok=True)
    steps, status, skipped = [], "ok", {}
    for stage in plan(part, yaml.safe_load(params_file.read_text())):
        if status != "ok":
            skipped.update({target_name(target): not_reached(status, timeout_s) for target in stage})
            continue
        commands = [([sys.executable, "-m", "renalmae.cli", *step_argv(target[0], params_file, *target[1:])],
                     workdir, logs / f"{target_name(target)}.log") for target in stage]  # fmt: skip
        for target, (outcome, seconds) in zip(stage, run_bounded(commands, env, deadline), strict=True):
            steps.append({"step": target_name(target), "status": outcome, "seconds": seconds})
            status = outcome if status == "ok" else status
    with log.open("a") as combined:  # the steps' logs, in plan order
        for row in steps:
            combined.write(f"==== {row['step']}: {row['status']} after {row['seconds']} s\n")
            combined.write((logs / f"{row['step']}.log").read_text(errors="replace"))
    figures = {}
    for metrics in sorted(workdir.glob("models/**/metrics.json")) + sorted(
        workdir.glob("reports/*/metrics.json")
    ):
        folder = metrics.parent.relative_to(workdir).as_posix()
        figures.update({f"{folder}:{key}": value for key, value in flatten(json.loads(metrics.read_text()))})
    seconds = round(time.monotonic() - started, 1)
    return {"status": status, "seconds": seconds, "steps": steps, "figures": figures, "skipped": skipped}


def flatten(value, prefix: str = ""):
    """(dotted key, number) for every finite number in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}.{index}")
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        yield prefix, value


def archive(prepared: Path, out: Path) -> dict:
    """reports.tar.gz: the pipeline parts' small outputs (figures, reports, metrics, tables, logs)."""
    files = sorted(
        (path for part in PIPELINE_PARTS for path in (prepared / part).rglob("*")
         if path.is_file() and path.suffix in ARCHIVED and ".checkpoints" not in path.parts),
        key=lambda path: path.stat().st_size,
    )  # fmt: skip
    kept, left_out, total = [], [], 0
    for path in files:  # smallest first: a size cut drops the largest tables
        fits = total + path.stat().st_size <= ARCHIVE_LIMIT_BYTES
        (kept if fits else left_out).append(path.relative_to(prepared).as_posix())
        total += path.stat().st_size if fits else 0
    with tarfile.open(out / "reports.tar.gz", "w:gz") as tar:
        for name in kept:
            tar.add(prepared / name, arcname=name)
    return {"files": len(kept), "left_out_over_size": left_out}


def part_blocker(part: str, prepared: Path, facts: dict, tiny: bool, cap: float) -> str | None:
    """Why a part cannot run here, or None."""
    if tiny and part == "throughput-compile":
        return "tiny: torch.compile takes minutes and a C++ toolchain on the CPU; measured on the device only"
    if cap < (5 if tiny else 30):
        return f"no time left: {max(cap, 0):.0f} s of the budget remained"
    if "probe_error" in facts:
        return "torch could not be imported: see environment.probe_error"
    if not tiny and not facts.get("cuda"):
        return "no CUDA device: this part measures the GPU path"
    if part in PIPELINE_PARTS and not (prepared / part / "data" / "splits.json").is_file():
        return f"{prepared / part} is not prepared: run `python benchmarks/gpu_check.py --prepare` first"
    if part in PIPELINE_PARTS and facts["missing_modules"] and "installed_wheels" not in facts:
        return f"missing on this machine and no wheels carried: {', '.join(facts['missing_modules'])}"
    return None


def device_run(prepared: Path, out: Path, tiny: bool, budget_s: float) -> dict:
    """Run the parts in order under one deadline; write summary.json, the logs and reports.tar.gz to `out`."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    packed = prepared.with_name(prepared.name + ".tar.gz")
    if packed.is_file():  # a fresh copy each time: a second run must not find the first one's models
        shutil.rmtree(prepared, ignore_errors=True)
        with tarfile.open(packed) as tar:
            tar.extractall(prepared.parent, filter="data")
    facts, env = environment(prepared)
    say(out, f"environment: {json.dumps(facts)}")
    summary = {"tiny": tiny, "budget_s": budget_s, "environment": facts, "parts": {}}
    if (prepared / "prepared.json").is_file():
        summary["prepared"] = json.loads((prepared / "prepared.json").read_text())
    caps = TINY_CAPS_S if tiny else CAPS_S
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        for part in PARTS:
            left = budget_s - (time.monotonic() - started) - RESERVE_S
            cap = min(caps[part] or left, left)
            reason = part_blocker(part, prepared, facts, tiny, cap)
            if reason:
                result = {"status": "skipped", "skip_reason": reason, "figures": {}}
            else:
                log = out / f"{part}.log"
                say(out, f"{part}: up to {cap:.0f} s, output in {log.name}")
                if part.startswith("throughput"):
                    result = throughput_part(part.endswith("compile"), tiny, env, log, Path(scratch), cap)
                else:
                    result = pipeline_part(part, prepared, env, log, cap)
                if not result["figures"]:
                    result["skip_reason"] = f"{result['status']} before any figure: see {log.name}"
            summary["parts"][part] = result
            say(out, f"{part}: {summary_line(result)}")
    summary["archive"] = archive(prepared, out)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    say(out, f"done in {summary['elapsed_s']} s: {out / 'summary.json'}")
    return summary


def summary_line(result: dict) -> str:
    shown = [f"{key}={value:.4g}" for key, value in result["figures"].items()
             if re.search(r"img_s|ratio|peak_gib|auc|loss", key, re.I)]  # fmt: skip
    return " ".join([result["status"], result.get("skip_reason", ""), *shown[:40]])


def say(out: Path, line: str) -> None:
    print(f"gpu_check: {line}", flush=True)
    with (out / "gpu_check.log").open("a") as log:
        log.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the same code on the CPU at tiny sizes")
    parser.add_argument("--prepare", action="store_true", help="here: ingest, validate, split, fetch wheels")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check-out"))
    parser.add_argument("--prepared", type=Path, default=None, help=f"prepared folder (default {PREPARED})")
    parser.add_argument("--budget-s", type=float, default=None, help="the whole run's deadline in seconds")
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))  # the device has the source, not the installed package
    if args.tiny:
        with tempfile.TemporaryDirectory(prefix="gpu-check-tiny-") as scratch:
            prepared = args.prepared or Path(scratch)
            prepare(prepared, tiny=True)
            device_run(prepared, args.out, tiny=True, budget_s=args.budget_s or TINY_BUDGET_S)
        return
    prepared = args.prepared or PREPARED
    if not args.prepare:
        device_run(prepared, args.out, tiny=False, budget_s=args.budget_s or DEVICE_BUDGET_S)
        return
    facts = prepare(prepared, tiny=False)
    packed = pack(prepared)
    carried = packed.stat().st_size + tree_bytes()
    print(json.dumps(facts["parts"], indent=1, default=str))
    print(f"{packed}: {packed.stat().st_size / 2**20:.1f} MiB; with the tracked tree {carried / 2**20:.1f} "
          f"MiB of the device tool's {CARRY_LIMIT_BYTES / 2**20:.0f}. Device call, from {ROOT}:\n"
          '  run(command="PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py", '
          'carry=["build/gpu-check.tar.gz"], timeout_s=600)')  # fmt: skip
    if carried > CARRY_LIMIT_BYTES:
        raise SystemExit("gpu_check: too large to carry; lower the gpu-vit phantom's n in GPU_VIT_BUDGET")


if __name__ == "__main__":
    main()
