"""Recipe sweep: which CPU-sized USF-MAE recipe generalises to the kidney data's external folds.

On `../shared/data/hydronephrosis` with the source's folds 7-8 held out as the external test set
(`profiles/kidney-external.yaml`), one factor at a time away from a base recipe: pretraining pool,
resolution, augmentation, pixel loss, pretraining length, mixup / CutMix / random erasing, layer decay, and
no pretraining at all. Every configuration runs the pipeline's own steps (`renalmae.steps.ingest / validate
/ split / pretrain / finetune / baseline`, tracking off) on ONE fold: trained on the other development
folds, early-stopped on that validation fold. DenseNet-169 (random init: no ImageNet weights here) is
trained the same way on the same fold at each resolution in the sweep.

Which data chose and which measured: the recipe is chosen on the validation fold's AUC (development data);
the external AUC (folds 7-8, never trained on, selected on or pretrained on) and the internal holdout AUC
are reported, never used to choose. One seed, one fold: differences smaller than the AUC's sampling error
(printed as a 95 % DeLong interval on the external set) are not evidence.

    nice -n 10 python benchmarks/recipe_sweep.py --out OUT          # the table in docs/results.md (hours)
    python benchmarks/recipe_sweep.py --out OUT --only base mixup   # some configurations
    python benchmarks/recipe_sweep.py --out OUT --no-train          # the table of what OUT holds so far
    python benchmarks/recipe_sweep.py --tiny                        # phantom smoke run (make benchmarks)

Every run is cached in OUT by the params sections its step declares (`STEP.params`), so configurations
that differ only in fine-tuning share one pretraining, a param added elsewhere keeps the cache, and a re-run
continues where a killed one stopped. Prints a markdown table and writes
OUT/results.json; exits 0.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from renalmae.initialisation import checkpoint_initialisation, mae_pretraining_data
from renalmae.models import create_model, model_spec, save_encoder
from renalmae.params import Params, load_params, params_from_dict
from renalmae.pipeline import Target
from renalmae.stats.auc import roc_auc
from renalmae.stats.bootstrap import paired_bootstrap
from renalmae.stats.delong import delong_test
from renalmae.steps import baseline, finetune, ingest, pretrain, split, validate
from renalmae.train.engine import seed_everything

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE = REPO_ROOT / "profiles" / "kidney-external.yaml"
DATA_SECTIONS = ("data", "phantom", "validate", "split")  # what ingest, validate and split read
USF_MAE_AUGMENT = {"crop_scale": [0.5, 2.0], "hflip": 0.5, "vflip": 0.5, "rotation_degrees": [0.0, 90.0],
                   "gamma": [1.0, 1.0], "contrast": [1.0, 1.0], "speckle_std": 0.0}  # fmt: skip
MAE_REGULARISERS = {"mixup": 0.8, "cutmix": 1.0, "random_erasing": 0.25}

# name → (what it changes, params overrides on top of the base); the base itself is the profile plus BASE.
BASE = {
    "pretrain": {"epochs": 10, "warmup_epochs": 1},
    "finetune": {"epochs": 10, "warmup_epochs": 1, "early_stopping_patience": 4, "layer_decay": 0.75},
    "baseline": {"epochs": 3, "warmup_epochs": 0.5, "early_stopping_patience": 2},
}
CONFIGS: dict[str, tuple[str, dict]] = {  # in running order: fine-tuning variants share base's pretraining
    "base": ("64 px, HC18 + development frames, kidney augmentation, 10 + 10 epochs", {}),
    "mixup": ("mixup 0.8 / CutMix 1.0 / random erasing 0.25", {"finetune": MAE_REGULARISERS}),
    "layer-decay-0.65": ("layer decay 0.65", {"finetune": {"layer_decay": 0.65}}),
    "no-layer-decay": ("layer decay off (1.0)", {"finetune": {"layer_decay": 1.0}}),
    "no-pretraining": ("ViT from random weights (pretraining skipped)", {}),
    "no-pool": ("pretraining on the development frames only (no HC18)", {"data": {"pool": []}}),
    "usf-mae-augment": ("USF-MAE augmentation (rotation 0-90°, flips, crop 0.5-2.0)",
                        {"augment": USF_MAE_AUGMENT}),
    "pixel-loss": ("pixel loss (norm_pix_loss false), as USF-MAE", {"mae": {"norm_pix_loss": False}}),
    "pretrain-2x": ("pretraining 20 epochs", {"pretrain": {"epochs": 20, "warmup_epochs": 2}}),
    "96px": ("96 px, patch 8 (144 tokens)", {"data": {"image_size": 96}}),
    "128px": ("128 px, patch 16 (64 tokens)", {"data": {"image_size": 128}, "encoder": {"patch_size": 16}}),
}  # fmt: skip
TINY = {  # on top of params.yaml (the phantom)
    "data": {"source": "phantom://renal?n=200&seed=0", "pool": ["phantom://renal?n=40&seed=1&unlabelled=true"],
             "image_size": 32},
    "split": {"folds": [0, 1]},
    "encoder": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    "mae": {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2},
    "pretrain": {"epochs": 1, "batch_size": 16},
    "finetune": {"epochs": 1, "batch_size": 16, "early_stopping_patience": 0},
    "baseline": {"arch": "resnet10t", "epochs": 1, "batch_size": 16, "early_stopping_patience": 0},
    "train": {"device": "cpu"},
}  # fmt: skip
TINY_CONFIGS = ("base", "mixup", "no-pretraining")
SPLITS = ("val", "test", "external")


def merged(raw: dict, overrides: dict) -> dict:
    result = copy.deepcopy(raw)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(result.get(section), dict):
            result[section].update(values)
        else:
            result[section] = values
    return result


def config_params(profile_raw: dict, overrides: dict, tiny: bool) -> Params:
    raw = merged(merged(profile_raw, BASE), overrides)
    if tiny:
        raw = merged(raw, TINY)
    raw["tracking"]["enabled"] = False
    raw["train"].update(progress=False, cpu_threads=raw["train"].get("cpu_threads") or 1)
    return params_from_dict(raw, source="recipe sweep")


def digest(params: Params, sections: tuple[str, ...]) -> str:
    values = {section: params.to_dict()[section] for section in sections}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def prepared_data(params: Params, out: Path) -> tuple[Path, Path]:
    """Ingest, validate and split once per data section (resolution, pool); cached in `out`."""
    root = out / "data" / digest(params, DATA_SECTIONS)
    splits_path = root / "splits.json"
    if not splits_path.is_file():
        ingest.run(params, root / "ingested")
        validate.run(params, root / "ingested", root / "validation")
        split.run(params, root / "ingested", root / "validation", splits_path)
    return root / "ingested", splits_path


def predictions(run_dir: Path, split_name: str) -> pd.DataFrame:
    table = pd.read_parquet(run_dir / "predictions.parquet")
    return table[table["split"] == split_name].sort_values("id")


def split_aucs(run_dir: Path) -> dict[str, dict]:
    """AUC per split present in the run's predictions (val, internal test, external): n, positives and a
    stratified bootstrap 95 % interval (1,000 resamples)."""
    result = {}
    for name in SPLITS:
        part = predictions(run_dir, name)
        if part.empty:
            continue
        columns = [column for column in part.columns if column.startswith("prob_")]
        y_true, probabilities = part["y_true"].to_numpy(), part[columns].to_numpy()
        interval = paired_bootstrap(y_true, probabilities, probabilities, resamples=1000).auc_a
        result[name] = {
            "auc": roc_auc(y_true, probabilities).value, "low": interval.low, "high": interval.high,
            "n": len(part), "positives": int((y_true > 0).sum()),
        }  # fmt: skip
    return result


def compare_external(vit_dir: Path, cnn_dir: Path) -> dict | None:
    """DeLong test of the two models' AUCs on the same external images (binary task)."""
    vit, cnn = predictions(vit_dir, "external"), predictions(cnn_dir, "external")
    if vit.empty or list(vit["id"]) != list(cnn["id"]):
        return None
    result = delong_test(
        vit["y_true"].to_numpy(), vit["prob_anomaly"].to_numpy(), cnn["prob_anomaly"].to_numpy()
    )
    half_width = 1.96 * result.std_error
    return {"vit_auc": result.auc_a, "cnn_auc": result.auc_b, "difference": result.difference,
            "ci95": [result.difference - half_width, result.difference + half_width],
            "p_value": result.p_value, "n": len(vit)}  # fmt: skip


def untrained_encoder(params: Params, encoder_dir: Path) -> None:
    """An encoder directory holding the MAE's initial weights (seeded as the pretrain step seeds)."""
    seed_everything(params.pretrain.seed)
    mae = create_model("mae", params)
    info = {"initialisation": checkpoint_initialisation(None, None, None),
            "pretraining_data": mae_pretraining_data(0, 0, [], "none: pretraining skipped")}  # fmt: skip
    save_encoder(encoder_dir, mae, model_spec("mae", params), info)


class NotRun(Exception):
    """A configuration whose runs are not in OUT, with --no-train."""


def run_config(name: str, params: Params, out: Path, fold: int, task: str, train: bool = True) -> dict:
    encoder_dir = encoder_dir_of(name, params, out)
    run_dir = run_dir_of(name, params, out, fold, task)
    if not train and not (run_dir / "metrics.json").is_file():
        raise NotRun(name)
    ingest_dir, splits_path = prepared_data(params, out)
    started = time.time()
    if not (encoder_dir / "encoder.json").is_file():
        if name == "no-pretraining":
            untrained_encoder(params, encoder_dir)
        else:
            timed(encoder_dir, pretrain.run, params, ingest_dir, splits_path, encoder_dir)
    if not (run_dir / "metrics.json").is_file():
        timed(run_dir, finetune.train_run, params, ingest_dir, splits_path, encoder_dir, Target(task, fold),
              run_dir.parents[1])  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    pretrain_seconds = 0.0 if name == "no-pretraining" else seconds_of(encoder_dir)
    return {"config": name, "model": "usfmae", "run_dir": str(run_dir), "image_size": params.data.image_size,
            "pretrain_seconds": pretrain_seconds,
            "finetune_seconds": seconds_of(run_dir), "best_epoch": metrics["best_epoch"],
            "aucs": split_aucs(run_dir), "wall_seconds": round(time.time() - started, 1)}  # fmt: skip


def timed(run_dir: Path, step, *args) -> None:
    """Run a step and keep its wall seconds beside its output (`<run_dir>.seconds`): the steps keep timings
    out of their files, so that the same run gives the same bytes. A resumed run counts its last call only."""
    started = time.time()
    step(*args)
    run_dir.with_name(run_dir.name + ".seconds").write_text(f"{time.time() - started:.1f}\n")


def seconds_of(run_dir: Path) -> float | None:
    """Wall seconds of a run: from `timed`, or from metrics.json where older steps wrote them; else None."""
    sidecar = run_dir.with_name(run_dir.name + ".seconds")
    if sidecar.is_file():
        return float(sidecar.read_text())
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return metrics.get("train_seconds")


def encoder_dir_of(name: str, params: Params, out: Path) -> Path:
    """The pretraining run of a configuration, keyed by what the pretrain step reads (its declaration)."""
    key = digest(params, pretrain.STEP.params)
    return out / "pretrain" / (f"untrained-{key}" if name == "no-pretraining" else key)


def run_dir_of(name: str, params: Params, out: Path, fold: int, task: str) -> Path:
    """The fine-tuning run: keyed by what the finetune step reads and by the encoder it starts from."""
    key = f"{digest(params, finetune.STEP.params)}-{encoder_dir_of(name, params, out).name}"
    return Target(task, fold).path(out / "finetune" / f"{name}-{key}")


def run_baseline(params: Params, out: Path, fold: int, task: str, train: bool = True) -> dict:
    run_dir = Target(task, fold).path(out / "baseline" / digest(params, baseline.STEP.params))
    if not train and not (run_dir / "metrics.json").is_file():
        raise NotRun(f"{params.baseline.arch} {params.data.image_size}px")
    ingest_dir, splits_path = prepared_data(params, out)
    if not (run_dir / "metrics.json").is_file():
        timed(
            run_dir,
            baseline.train_run,
            params,
            ingest_dir,
            splits_path,
            Target(task, fold),
            run_dir.parents[1],
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"config": f"{params.baseline.arch} {params.data.image_size}px", "model": params.baseline.arch,
            "what": "the CNN baseline, random init, trained the same way on the same fold",
            "run_dir": str(run_dir), "image_size": params.data.image_size,
            "pretrain_seconds": 0.0, "finetune_seconds": seconds_of(run_dir),
            "best_epoch": metrics["best_epoch"], "aucs": split_aucs(run_dir)}  # fmt: skip


def _cell(aucs: dict, name: str, with_ci: bool = False) -> str:
    entry = aucs.get(name)
    if entry is None:
        return "n/a"
    if with_ci and entry["low"] is not None:
        return f"{entry['auc']:.3f} ({entry['low']:.3f}–{entry['high']:.3f})"
    return f"{entry['auc']:.3f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| configuration | what changes | val AUC (chooses) | external AUC (95 % CI) | internal test AUC "
        "| pretrain s | fine-tune s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        aucs = row["aucs"]
        lines.append(
            f"| {row['config']} | {row.get('what', '')} | {_cell(aucs, 'val')} | "
            f"{_cell(aucs, 'external', True)} | {_cell(aucs, 'test')} | "
            f"{_seconds(row['pretrain_seconds'])} | {_seconds(row['finetune_seconds'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="phantom data, tiny models, three configurations")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument(
        "--profile", type=Path, default=None, help=f"default: {PROFILE.name} (--tiny: params.yaml)"
    )
    parser.add_argument("--only", nargs="*", default=None, choices=list(CONFIGS))
    parser.add_argument("--fold", type=int, default=0, help="the validation fold (0-based)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--no-train", action="store_true", help="train nothing: the table of the runs OUT already holds"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.tiny else logging.INFO, format="%(asctime)s %(message)s"
    )
    torch.set_num_threads(1)
    names = list(TINY_CONFIGS if args.tiny else (args.only or CONFIGS))
    with tempfile.TemporaryDirectory(prefix="recipe-sweep-") as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        profile = args.profile or (REPO_ROOT / "params.yaml" if args.tiny else PROFILE)
        profile_raw = load_params(profile).to_dict()
        rows, not_run = [], []
        train = not args.no_train
        base_size = config_params(profile_raw, {}, args.tiny).data.image_size
        if not args.no_baseline:  # the reference first: DenseNet-169 at the base resolution
            try:
                rows.append(
                    run_baseline(config_params(profile_raw, {}, args.tiny), out, args.fold, "binary", train)
                )
                print(json.dumps(rows[-1], default=str), flush=True)
            except NotRun as missing:
                not_run.append(str(missing))
        for name in names:
            params = config_params(profile_raw, CONFIGS[name][1], args.tiny)
            try:
                row = run_config(name, params, out, args.fold, "binary", train)
            except NotRun:
                not_run.append(name)
                continue
            rows.append({**row, "what": CONFIGS[name][0]})
            print(json.dumps(rows[-1], default=str), flush=True)
        vits = [row for row in rows if row["model"] == "usfmae" and "val" in row["aucs"]]
        best = max(vits, key=lambda row: row["aucs"]["val"]["auc"]) if vits else None
        if best is not None and best["image_size"] != base_size and not args.no_baseline:
            params = config_params(profile_raw, {"data": {"image_size": best["image_size"]}}, args.tiny)
            try:
                rows.append(run_baseline(params, out, args.fold, "binary", train))
            except NotRun as missing:
                not_run.append(str(missing))
        cnn = next((row for row in rows if row["model"] != "usfmae" and best is not None
                    and row["image_size"] == best["image_size"]), None)  # fmt: skip
        comparison = compare_external(Path(best["run_dir"]), Path(cnn["run_dir"])) if best and cnn else None
        (out / "results.json").write_text(
            json.dumps(
                {
                    "rows": rows,
                    "chosen_on_val": best and best["config"],
                    "external_delong": comparison,
                    "not_run": not_run,
                },
                indent=2,
                default=str,
            )  # fmt: skip
        )
        print(table(rows))
        if not_run:
            print(f"\nnot run yet (--no-train): {', '.join(not_run)}")
        if best is not None:
            print(f"\nchosen on the validation fold: {best['config']}")
        if comparison is not None:
            print(f"external, {best['config']} vs {cnn['config']} (DeLong): {json.dumps(comparison)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
