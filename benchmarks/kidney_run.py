"""Real kidney ultrasound benchmark: MAE pretraining, USF-MAE and DenseNet-169 per fold, holdout AUCs.

Runs the same step functions as the CLI / DVC (`renalmae.steps.*`) on an existing ingest + split of
`profiles/kidney-cpu.yaml`, with tracking off, and prints per-fold and fold-ensemble (mean probability)
holdout AUCs as JSON (also written to OUT_DIR/results.json). See docs/results.md.

    renalmae ingest --params profiles/kidney-cpu.yaml --out DATA/ingested
    renalmae validate --params profiles/kidney-cpu.yaml --ingest DATA/ingested --out DATA/validation
    renalmae split --params profiles/kidney-cpu.yaml --ingest DATA/ingested --validation DATA/validation \
        --out DATA/splits.json
    python benchmarks/kidney_run.py profiles/kidney-cpu.yaml DATA OUT_DIR [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from renalmae.params import load_params, params_from_dict
from renalmae.stats import roc_auc
from renalmae.steps import baseline, finetune, pretrain

PROBABILITIES = ["prob_normal", "prob_anomaly"]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("data", type=Path, help="folder holding ingested/ and splits.json")
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--skip", nargs="*", default=[], choices=["usfmae", "densenet169"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    raw = load_params(args.profile).to_dict()
    raw["tracking"]["enabled"] = False
    raw["train"].update(device=args.device, progress=False)
    params = params_from_dict(raw)
    ingest, splits = args.data / "ingested", args.data / "splits.json"
    results, timings = {"profile": args.profile, "device": args.device}, {}
    started = time.time()
    pretrain.run(params, ingest, splits, args.out / "pretrain")
    timings["pretrain"] = time.time() - started
    for name, step in (("usfmae", finetune), ("densenet169", baseline)):
        if name in args.skip:
            continue
        started = time.time()
        for fold in params.split.folds:
            run_dir = args.out / name / f"fold{fold}"
            if name == "usfmae":
                step.run(params, ingest, splits, args.out / "pretrain", "binary", fold, run_dir)
            else:
                step.run(params, ingest, splits, "binary", fold, run_dir)
        timings[name] = time.time() - started
        results[name] = holdout_aucs(args.out / name, params.split.folds)
    results["seconds"] = timings
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
