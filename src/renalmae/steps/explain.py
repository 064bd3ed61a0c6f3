"""Step `explain`: does each model use the lesion, and do its Score-CAM maps show what it uses?

Models: for each (model, task) of the params' tasks, the fold model of the params' folds (other run
folders are ignored with a warning) with the best validation AUC (`renalmae.explain.selection`).
Sets: the external set first (when the splits have one), then the internal holdout. On each, every image
with a lesion mask (at most `explain.max_images`) gets the lesion test, localisation, faithfulness and
occlusion agreement; a few per class are shown. What is measured and written to `out_dir` is
`renalmae.explain.held_out`'s.
"""

from __future__ import annotations

from pathlib import Path

from renalmae.data.cache import load_ingested
from renalmae.data.splits import load_splits
from renalmae.evaluate.runs import load_runs
from renalmae.explain.held_out import explain_held_out
from renalmae.explain.selection import choose_runs
from renalmae.params import Params
from renalmae.pipeline import step
from renalmae.train.distributed import setup

STEP = step("explain")


def run(params: Params, ingest_dir: Path, splits_path: Path, run_dirs: list[Path], out_dir: Path) -> Path:
    runs = load_runs(run_dirs, list(params.finetune.tasks), list(params.split.folds))
    return explain_held_out(
        load_ingested(ingest_dir), load_splits(splits_path), choose_runs([run.run_dir for run in runs]),
        params.explain, list(params.data.classes), params.data.negative_class, Path(out_dir),
        setup(params.train.device, params.train.cpu_threads).device, params.train.precision,
        params.evaluate.confidence, params.evaluate.bootstrap_resamples, params.train.progress,
    )  # fmt: skip
