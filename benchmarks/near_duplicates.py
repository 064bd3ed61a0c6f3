"""Near-duplicate search: cost of the perceptual hash next to decoding, and of the pair search + clustering.

    python benchmarks/near_duplicates.py          # kidney frames + fetal head pool (../shared/data)
    python benchmarks/near_duplicates.py --tiny   # 400 phantom frames and 40 annotated JPEG re-exports

Prints, from one run: seconds to decode the files as ingest does, seconds to hash them (and the ratio),
seconds to search all labelled-labelled and labelled-pool pairs and cluster them, and what was found
(pairs, pairs across series / given folds, conflicting labels, clusters). Always exits 0.

Measured 2026-11-29 on the shared 2-core machine at load average ~19-21 (busy: rerun on a quiet machine
for absolute seconds), 3,700 kidney frames + 1,334 fetal head frames, 32 bits: decoding 49.7 s, hashing
22.7 s (0.46 x decoding), pair search + clustering 3.1 s; 16,089 labelled pairs, 4,442 across series,
4,420 across the source's given folds, 150 under conflicting labels, 456 clusters of 2,654 frames, no
pool frame near a labelled one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from renalmae.data.decode import DEFAULT_MAX_IMAGE_PIXELS, decode_file
from renalmae.data.near_duplicates import NearDuplicates, perceptual_hash
from renalmae.params import DataParams

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT / ".." / "shared" / "data"
MAX_BITS = DataParams().near_duplicate_bits


def kidney_table() -> pd.DataFrame | None:
    manifest = SHARED / "hydronephrosis" / "manifest.csv"
    if not manifest.is_file():
        return None
    frame = pd.read_csv(manifest)
    labelled = pd.DataFrame(
        {
            "source": [str(manifest.parent / image) for image in frame["image"]],
            "label": frame["label"],
            "group": frame["series_id"].astype(str),
            "fold": frame["fold"],
            "origin": "labelled",
        }
    )
    pool_files = sorted((SHARED / "hc18_fetal_head").glob("*.png"))
    pool = pd.DataFrame({"source": [str(path) for path in pool_files], "origin": "pool"})
    return pd.concat([labelled, pool], ignore_index=True)


def tiny_table(directory: Path) -> pd.DataFrame:
    """400 phantom frames as PNG, and a JPEG re-export with burned-in text of every tenth one."""
    from PIL import Image, ImageDraw

    from renalmae.data.phantom import generate_phantom

    phantom = generate_phantom(400, 0, 128, 0.3, (0.67, 0.27, 0.06))
    rows = []
    for index, (image, label) in enumerate(zip(phantom.images, phantom.labels, strict=True)):
        path = directory / f"frame_{index:03d}.png"
        Image.fromarray(image).save(path)
        rows.append({"source": str(path), "label": label, "group": f"g{index}", "fold": index % 5})
        if index % 10 == 0:
            copy = Image.fromarray(image)
            ImageDraw.Draw(copy).text((4, 4), "12 cm  MI 0.9", fill=255)
            copy.save(directory / f"copy_{index:03d}.jpg", quality=70)
            rows.append({"source": str(directory / f"copy_{index:03d}.jpg"), "label": label,
                         "group": f"c{index}", "fold": (index + 1) % 5})  # fmt: skip
    return pd.DataFrame(rows).assign(origin="labelled")


def run(table: pd.DataFrame, name: str) -> None:
    started = time.perf_counter()
    images = [decode_file(path, DEFAULT_MAX_IMAGE_PIXELS)[0] for path in table["source"]]
    decode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    table = table.assign(phash=[perceptual_hash(image) for image in images])
    hash_seconds = time.perf_counter() - started
    table = table.assign(id=[f"img{index}" for index in range(len(table))])
    started = time.perf_counter()
    near = NearDuplicates.find(table, MAX_BITS)
    groups = near.near_groups()
    search_seconds = time.perf_counter() - started
    summary = near.summary()
    labelled = near.labelled_pairs
    folds = table["fold"].to_numpy()
    cross_fold = int((folds[labelled["a"]] != folds[labelled["b"]]).sum())
    n_labelled, n_pool = int((table["origin"] == "labelled").sum()), int((table["origin"] == "pool").sum())
    print(f"{name}: {n_labelled} labelled + {n_pool} pool images, max {MAX_BITS} of 256 bits")
    print(f"  decode (as ingest)      {decode_seconds:7.2f} s")
    ratio = hash_seconds / decode_seconds
    print(f"  perceptual hash         {hash_seconds:7.2f} s  ({ratio:.2f} x decoding)")
    print(f"  pair search + clusters  {search_seconds:7.2f} s  ({groups.notna().sum()} images clustered)")
    print(f"  found: {summary} | labelled pairs across given folds: {cross_fold}")
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="phantom frames instead of the shared data")
    args = parser.parse_args()
    if not args.tiny:
        table = kidney_table()
        if table is None:
            print(f"shared data not found under {SHARED.resolve()}; run with --tiny", file=sys.stderr)
            return 0
        run(table, "kidney frames + fetal head pool")
        return 0
    with tempfile.TemporaryDirectory() as directory:
        run(tiny_table(Path(directory)), "tiny (phantom)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
