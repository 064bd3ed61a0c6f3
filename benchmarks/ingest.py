"""Ingest throughput (images/s): the real kidney frames (224x224 JPEG + PNG mask), or `--tiny` on the phantom.

    python benchmarks/ingest.py                 # ../shared/data/hydronephrosis/manifest.csv (skips if absent)
    python benchmarks/ingest.py --tiny          # phantom://renal?n=400, runs anywhere

Prints wall-clock images/s and images per CPU-second (this process plus its decoding workers), so that a
result on a busy shared machine can still be compared: `cpu_img_per_s x cores` is what idle cores give.
Always exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from renalmae.params import params_from_dict
from renalmae.steps import ingest

REPO_ROOT = Path(__file__).resolve().parents[1]
KIDNEY_MANIFEST = REPO_ROOT / ".." / "shared" / "data" / "hydronephrosis" / "manifest.csv"


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure(label: str, source: str, classes: list[str], workers: int, size: int, out_dir: Path) -> None:
    params = params_from_dict(
        {
            "data": {
                "source": source,
                "pool": [],
                "classes": classes,
                "negative_class": classes[0],
                "image_size": size,
                "decode_workers": workers,
            },
            "train": {"progress": False},
        }
    )
    cpu_before, wall_before = cpu_seconds(), time.perf_counter()
    ingest.run(params, out_dir)
    wall, cpu = time.perf_counter() - wall_before, cpu_seconds() - cpu_before
    images = json.loads((out_dir / "ingest.json").read_text())["n_images"]
    print(
        f"{label:<28} {images:>6} images  {wall:7.2f} s  {images / wall:8.1f} img/s wall  "
        f"{images / cpu:8.1f} img/CPU-s  (workers={workers}, size={size}, load={os.getloadavg()[0]:.1f})"
    )


def without_masks(manifest: Path, out: Path) -> Path:
    """The same manifest with absolute image paths and no mask column (to time the images alone)."""
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "fold", "series_id"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    "image": str((manifest.parent / row["image"]).resolve()),
                    "label": row["label"],
                    "fold": row["fold"],
                    "series_id": row["series_id"],
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="phantom://renal?n=400 instead of the real data")
    parser.add_argument("--workers", type=int, default=2, help="data.decode_workers (default 2)")
    parser.add_argument("--size", type=int, default=64, help="data.image_size (default 64)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="renalmae-bench-") as scratch:
        scratch = Path(scratch)
        if args.tiny:
            measure(
                "phantom (generate + cache)",
                "phantom://renal?n=400&seed=0",
                ["normal", "utd", "mcdk"],
                args.workers,
                args.size,
                scratch / "phantom",
            )
            return 0
        if not KIDNEY_MANIFEST.is_file():
            print(f"skipped: real kidney data not found at {KIDNEY_MANIFEST.resolve()} (see its README.md)")
            return 0
        classes = ["normal", "hydronephrosis"]
        measure(
            "kidney JPEG only",
            str(without_masks(KIDNEY_MANIFEST, scratch / "images.csv")),
            classes,
            args.workers,
            args.size,
            scratch / "images",
        )
        measure(
            "kidney JPEG + PNG mask",
            str(KIDNEY_MANIFEST),
            classes,
            args.workers,
            args.size,
            scratch / "masks",
        )
        measure(
            "kidney JPEG only, 1 process",
            str(scratch / "images.csv"),
            classes,
            0,
            args.size,
            scratch / "serial",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
