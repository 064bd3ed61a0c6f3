"""Ingest throughput (images/s) and peak memory: real kidney frames, a large synthetic PNG pool, or `--tiny`.

    python benchmarks/ingest.py                  # the kidney frames of ../shared/data (skips if absent)
    python benchmarks/ingest.py --tiny           # a 300-image PNG pool at 224 px, runs anywhere
    python benchmarks/ingest.py --make-pool DIR --images 100000  # write the synthetic pool (PNG, 256-640 px)
    python benchmarks/ingest.py --pool DIR       # ingest it at 224 px: throughput and peak RSS
    python benchmarks/ingest.py --pool DIR --kill-after 60       # ... killed after 60 s, then resumed

Each ingest runs in a fresh subprocess; the benchmark prints that process's peak RSS (VmHWM), its
largest decoding worker's (which counts the pages it shares with the ingest process), and the sum of
the ingest process and every worker at their peaks (an upper bound of the total). Throughput is
wall-clock images/s and images per CPU-second (the ingest process and its workers), so that a result
on a busy shared machine can still be compared: `cpu_img_per_s x cores` is what idle cores give. The
load average is printed with every figure. Always exits 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
KIDNEY_MANIFEST = REPO_ROOT / ".." / "shared" / "data" / "hydronephrosis" / "manifest.csv"
LABELLED = "phantom://renal?n=30&seed=0"
"""The labelled source beside a benchmarked pool (ingest needs one; 30 images cost nothing)."""
POOL_SIDES = (256, 640)
BASE_IMAGES = 256
"""Rendered phantom frames the pool's files are cropped from (fewer for a small pool)."""
FILES_PER_FOLDER = 1000

INGEST_AND_MEASURE = """
import json, os, re, resource, sys, time
from pathlib import Path
from renalmae.params import params_from_dict
from renalmae.steps import ingest

params = params_from_dict(json.loads(sys.argv[1]))
times = os.times()
started = time.perf_counter()
ingest.run(params, sys.argv[2])
wall = time.perf_counter() - started
after = os.times()
cpu = sum(after[:4]) - sum(times[:4])
kib = 1024
# VmHWM, not ru_maxrss: the latter survives exec and would count the launching process's pages
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * kib
print(json.dumps({
    "wall_s": wall, "cpu_s": cpu, "peak_rss_main": peak,
    "peak_rss_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
}))
"""


def make_pool(directory: Path, images: int, seed: int = 0, processes: int = 1) -> None:
    """`images` distinct greyscale PNGs of 256-640 px a side: crops of rendered phantom ultrasound.

    A few hundred phantom frames are rendered at 640 px (kept in `<directory>/.bases.npy`); each file is
    a random crop (random width and height), possibly mirrored, with its index written into its first
    pixels so that no two files are the same image, saved with zlib level 1 (OpenCV's default for PNG).
    An existing file is kept, so a stopped run continues where it was.
    """
    from renalmae.data.phantom import generate_phantom

    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cached = directory / ".bases.npy"
    if cached.is_file():
        bases = np.load(cached)
    else:
        n_bases = min(BASE_IMAGES, max(4, images // 100))
        bases = generate_phantom(n_bases, seed, POOL_SIDES[1], difficulty=0.5, unlabelled=True).images
        np.save(cached, bases)
        print(f"rendered {n_bases} base frames in {time.perf_counter() - started:.0f} s", flush=True)
    rng = np.random.default_rng(seed)
    layout = [  # (width, height, base, (top, left, mirror)) of every file, drawn before any is written
        (*rng.integers(POOL_SIDES[0], POOL_SIDES[1] + 1, size=2), rng.integers(len(bases)), rng.random(3))
        for _ in range(images)
    ]
    parts = [(directory, bases, layout, part, processes) for part in range(processes)]
    if processes == 1:
        _write_pool_part(*parts[0])
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.starmap(_write_pool_part, parts)
    print(f"{images} files in {time.perf_counter() - started:.0f} s", flush=True)


def _write_pool_part(directory: Path, bases: np.ndarray, layout: list, part: int, parts: int) -> None:
    from PIL import Image

    for index in range(part, len(layout), parts):
        width, height, base, (top, left, mirror) = layout[index]
        path = directory / f"{index // FILES_PER_FOLDER:03d}" / f"pool-{index:06d}.png"
        if path.exists():
            continue
        top = int(top * (POOL_SIDES[1] - height + 1))
        left = int(left * (POOL_SIDES[1] - width + 1))
        crop = np.array(bases[base][top : top + height, left : left + width])
        if mirror < 0.5:
            crop = crop[:, ::-1].copy()
        crop[0, :8] = np.frombuffer(np.uint64(index).tobytes(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(path.with_suffix(".tmp.png"), compress_level=1)
        os.replace(path.with_suffix(".tmp.png"), path)
        if part == 0 and index % 5000 < parts and index:
            print(f"about {index} files", flush=True)


def ingest_params(source: str, pool: list[str], classes: list[str], size: int, workers: int) -> dict:
    return {
        "data": {
            "source": source, "pool": pool, "classes": classes, "negative_class": classes[0],
            "image_size": size, "decode_workers": workers,
        },
        "train": {"progress": False},
    }  # fmt: skip


def run_ingest(raw_params: dict, out_dir: Path, kill_after: float | None = None) -> dict | None:
    """Ingest in a fresh process; its figures, or None when it was killed after `kill_after` seconds."""
    command = [
        sys.executable,
        "-c",
        textwrap.dedent(INGEST_AND_MEASURE),
        json.dumps(raw_params),
        str(out_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, _ = process.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the ingest and its workers, as when a node is lost
        process.communicate()
        return None
    if process.returncode != 0:
        raise SystemExit(f"ingest failed (exit {process.returncode})")
    return json.loads(stdout.strip().splitlines()[-1])


def report(label: str, figures: dict, images: int, workers: int, size: int) -> None:
    wall, cpu = figures["wall_s"], figures["cpu_s"]
    main, worker = figures["peak_rss_main"] / 2**20, figures["peak_rss_worker"] / 2**20
    total = main + worker * max(1, workers)
    print(
        f"{label:<30} {images:>7} images  {wall:8.1f} s  {images / wall:8.1f} img/s wall  "
        f"{images / cpu:8.1f} img/CPU-s  peak RSS: ingest {main:6.0f} MiB, largest worker {worker:6.0f} MiB, "
        f"total <= {total:6.0f} MiB  (workers={workers}, size={size}, load={os.getloadavg()[0]:.1f})",
        flush=True,
    )


def count_images(directory: Path) -> int:
    return sum(1 for _ in directory.rglob("*.png"))


def benchmark_pool(pool: Path, size: int, workers: int, kill_after: float | None, scratch: Path) -> None:
    raw = ingest_params(LABELLED, [str(pool)], ["normal", "utd", "mcdk"], size, workers)
    images = count_images(pool) + 30
    print(f"pool {pool}: {images - 30} PNG files (+30 phantom labelled); load before: {os.getloadavg()}")
    out = scratch / "ingested"
    if kill_after is not None:
        started = time.perf_counter()
        if run_ingest(raw, out, kill_after) is None:
            shards = scratch / ".checkpoints" / "ingested"
            done = len([p for p in shards.glob("shard-*") if p.is_dir()]) if shards.is_dir() else 0
            print(f"killed after {time.perf_counter() - started:.0f} s with {done} finished shards "
                  f"of {raw['data'].get('shard_size', 512)} images kept", flush=True)  # fmt: skip
        figures = run_ingest(raw, out)
        report("pool, resumed after the kill", figures, images, workers, size)
        return
    report("pool (PNG 256-640 px)", run_ingest(raw, out), images, workers, size)


def benchmark_kidney(size: int, workers: int, scratch: Path) -> None:
    if not KIDNEY_MANIFEST.is_file():
        print(f"skipped: real kidney data not found at {KIDNEY_MANIFEST.resolve()} (see its README.md)")
        return
    classes = ["normal", "hydronephrosis"]
    raw = ingest_params(str(KIDNEY_MANIFEST.resolve()), [], classes, size, workers)
    figures = run_ingest(raw, scratch / "kidney")
    images = json.loads((scratch / "kidney" / "ingest.json").read_text())["n_images"]
    report("kidney JPEG + PNG mask", figures, images, workers, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 300-image PNG pool (runs anywhere)")
    parser.add_argument("--pool", type=Path, help="ingest this folder of images as the pool")
    parser.add_argument("--make-pool", type=Path, help="write the synthetic PNG pool into this folder")
    parser.add_argument("--images", type=int, default=100_000, help="size of --make-pool (default 100000)")
    parser.add_argument("--processes", type=int, default=1, help="--make-pool: processes writing files")
    parser.add_argument("--kill-after", type=float, help="with --pool: SIGKILL the ingest after this many s, "
                        "then run it again (it resumes from its finished shards)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="data.decode_workers (default 2)")
    parser.add_argument("--size", type=int, default=224, help="data.image_size (default 224)")
    args = parser.parse_args(argv)
    if args.make_pool:
        make_pool(args.make_pool, args.images, processes=args.processes)
        return 0
    with tempfile.TemporaryDirectory(prefix="renalmae-bench-") as scratch:
        scratch = Path(scratch)
        if args.tiny:
            make_pool(scratch / "pool", 300)
            benchmark_pool(scratch / "pool", args.size, args.workers, None, scratch)
        elif args.pool:
            benchmark_pool(args.pool, args.size, args.workers, args.kill_after, scratch)
        else:
            benchmark_kidney(args.size, args.workers, scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
