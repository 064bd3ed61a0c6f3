"""Real kidney ultrasound benchmark: MAE pretraining, USF-MAE and DenseNet-169 per fold, holdout AUCs.

Runs the same step functions as the CLI / DVC (`renalmae.steps.*`) on an existing ingest + split of
`profiles/kidney-cpu.yaml`, with tracking off, and prints per-fold and fold-ensemble (mean probability)
holdout AUCs as JSON (also written to OUT_DIR/results.json). See docs/results.md.

    renalmae ingest --params profiles/kidney-cpu.yaml --out DATA/ingested
    renalmae validate --params profiles/kidney-cpu.yaml --ingest DATA/ingested --out DATA/validation
    renalmae split --params profiles/kidney-cpu.yaml --ingest DATA/ingested --validation DATA/validation \
        --out DATA/splits.json
    python benchmarks/kidney_run.py profiles/kidney-cpu.yaml DATA OUT_DIR [--device cuda]
    python benchmarks/kidney_run.py --tiny    # the profile's recipe on a small phantom, 2 folds, 1 epoch

`--tiny` (what `make benchmarks` runs) ingests, validates and splits a small phantom with the same steps
into a temporary folder and trains one epoch of each model: the code path, not the kidney figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.params import load_params, params_from_dict
from renalmae.stats.auc import roc_auc
from renalmae.steps import baseline, finetune, ingest, pretrain, split, validate

PROBABILITIES = ["prob_normal", "prob_anomaly"]
TINY = {  # on top of the profile: a 3-class phantom (binary task: normal vs anomaly), 32 px, 2 folds, 1 epoch
    "data": {"source": "phantom://renal?n=200&seed=0", "pool": ["phantom://renal?n=20&seed=1&unlabelled=true"],
             "classes": ["normal", "utd", "mcdk"], "image_size": 32, "drop_duplicates": False,
             "near_duplicate_conflicts": "refuse"},
    "split": {"folds": [0, 1], "use_given": False},
    "pretrain": {"epochs": 1, "batch_size": 16},
    "finetune": {"epochs": 1, "batch_size": 16},
    "baseline": {"epochs": 1, "batch_size": 16},
    "train": {"cpu_threads": 1},
}  # fmt: skip


def auc(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    return roc_auc(y_true, probabilities).value


def holdout_aucs(run_root: Path, folds: list[int]) -> dict:
    tables = [pd.read_parquet(run_root / f"fold{fold}" / "predictions.parquet") for fold in folds]
    per_fold = {}
    for fold, table in zip(folds, tables, strict=True):
        val, test = table[table["split"] == "val"], table[table["split"] == "test"]
        per_fold[fold] = {
            "val_auc": auc(val["y_true"].to_numpy(), val[PROBABILITIES].to_numpy()),
            "test_auc": auc(test["y_true"].to_numpy(), test[PROBABILITIES].to_numpy()),
        }
    tests = [table[table["split"] == "test"].sort_values("id") for table in tables]
    ensemble = np.mean([frame[PROBABILITIES].to_numpy() for frame in tests], axis=0)
    return {"per_fold": per_fold, "ensemble_test_auc": auc(tests[0]["y_true"].to_numpy(), ensemble),
            "n_test": len(tests[0]), "n_test_positive": int(tests[0]["y_true"].sum())}  # fmt: skip


def tiny_data(params, root: Path) -> Path:
    """Ingest, validate and split the --tiny phantom into `root` with the pipeline's steps."""
    ingest.run(params, root / "ingested")
    validate.run(params, root / "ingested", root / "validation")
    split.run(params, root / "ingested", root / "validation", root / "splits.json")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", nargs="?", default="profiles/kidney-cpu.yaml")
    parser.add_argument("data", type=Path, nargs="?", help="folder holding ingested/ and splits.json")
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--skip", nargs="*", default=[], choices=["usfmae", "densenet169"])
    parser.add_argument("--tiny", action="store_true", help="a small phantom, 2 folds, 1 epoch (seconds)")
    args = parser.parse_args()
    if not args.tiny and (args.data is None or args.out is None):
        parser.error("the following arguments are required: data, out (or --tiny)")
    logging.basicConfig(level=logging.WARNING if args.tiny else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")  # fmt: skip
    raw = load_params(args.profile).to_dict()
    raw["tracking"]["enabled"] = False
    raw["train"].update(device="cpu" if args.tiny else args.device, progress=False)
    if args.tiny:
        for section, values in TINY.items():
            raw[section].update(values)
    params = params_from_dict(raw)
    with tempfile.TemporaryDirectory(prefix="kidney-run-") as scratch:
        data = tiny_data(params, Path(scratch) / "data") if args.tiny else args.data
        run(params, args, data, args.out or Path(scratch) / "out")


def run(params, args, data: Path, out: Path) -> None:
    ingest_dir, splits = data / "ingested", data / "splits.json"
    results, timings = {"profile": args.profile, "device": params.train.device, "tiny": args.tiny}, {}
    started = time.time()
    pretrain.run(params, ingest_dir, splits, out / "pretrain")
    timings["pretrain"] = time.time() - started
    for name, step in (("usfmae", finetune), ("densenet169", baseline)):
        if name in args.skip:
            continue
        started = time.time()
        encoder = (out / "pretrain",) if name == "usfmae" else ()
        step.run(params, ingest_dir, splits, *encoder, out / name, task="binary", repeat=0)  # every fold
        timings[name] = time.time() - started
        results[name] = holdout_aucs(out / name / "binary", params.split.folds)
    results["seconds"] = timings
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
