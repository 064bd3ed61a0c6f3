"""Ingest writes the cache shard by shard: a kill loses only unfinished shards, memory stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ingestkit import class_tree, manifest_dataset, noise, tiny_params, write_png

from renalmae.data import cache_writer
from renalmae.data.cache import IMAGES_FILE, MASKS_FILE, TABLE_FILE, load_ingested
from renalmae.data.cache_writer import IngestPlan, Shard
from renalmae.data.decode import DecodeTask
from renalmae.errors import DataError
from renalmae.steps import ingest

SHARD_SIZE = 4

KILL_AFTER_TWO_SHARDS = """
import os, signal, sys
from renalmae.data import cache_writer
from renalmae.params import load_params
from renalmae.steps import ingest

original, finished = cache_writer.write_shard, []

def write_then_die(*args):
    results = original(*args)
    finished.append(args[0].index)
    if len(finished) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs, as when a node is lost
    return results

cache_writer.write_shard = write_then_die
ingest.run(load_params(sys.argv[1]), sys.argv[2])
"""


def mixed_inputs(root: Path, **data):
    """9 masked manifest frames, a 5-image phantom pool, then 7 pool files: file shards of 4, 4, 1, 4, 3."""
    manifest = manifest_dataset(
        root / "data", {"s1": ("normal", 1, 0), "s2": ("utd", 2, 10), "s3": ("utd", 1, 20)}, frames=3
    )
    for index in range(7):
        write_png(root / "pool" / f"p{index}.png", noise(100 + index, height=30 + index))
    pools = ["phantom://renal?n=5&seed=3&unlabelled=true", root / "pool"]
    return tiny_params(manifest, pool=pools, data={"shard_size": SHARD_SIZE, **data})


class CountingWrites:
    """Spy on `write_shard`: which shards this run decoded."""

    def __init__(self, monkeypatch):
        self.decoded: list[int] = []
        original = cache_writer.write_shard

        def counting(shard, *args):
            self.decoded.append(shard.index)
            return original(shard, *args)

        monkeypatch.setattr(cache_writer, "write_shard", counting)


def same_ingest(first: Path, second: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(first / TABLE_FILE), pd.read_parquet(second / TABLE_FILE))
    for name in (IMAGES_FILE, MASKS_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def kill_midway(params, out_dir: Path, tmp_path: Path) -> Path:
    """Run ingest in a subprocess that SIGKILLs itself once two shards are written; the shard directory."""
    script, params_file = tmp_path / "kill_midway.py", tmp_path / "params-kill.yaml"
    script.write_text(KILL_AFTER_TWO_SHARDS)
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    killed = subprocess.run([sys.executable, str(script), str(params_file), str(out_dir)], timeout=300)
    assert killed.returncode == -9
    assert not out_dir.exists(), "a killed ingest leaves no output"
    return out_dir.parent / ".checkpoints" / out_dir.name


def test_an_ingest_killed_midway_resumes_without_redoing_finished_shards(tmp_path, monkeypatch):
    params = mixed_inputs(tmp_path)
    uninterrupted = ingest.run(params, tmp_path / "uninterrupted")
    shard_dir = kill_midway(params, tmp_path / "ingested", tmp_path)
    assert sorted(path.name for path in shard_dir.iterdir()) == ["shard-00000", "shard-00001"]
    torn = shard_dir / ".shard-00002.tmp-x"  # what a kill while writing a shard leaves
    torn.mkdir()
    (torn / IMAGES_FILE).write_bytes(b"half a file")

    writes = CountingWrites(monkeypatch)
    resumed = ingest.run(params, tmp_path / "ingested")

    assert writes.decoded == [2, 3, 4], "only the unfinished shards are decoded again"
    same_ingest(resumed, uninterrupted)
    assert not shard_dir.exists(), "the shards are removed once the cache is complete"


def test_a_file_changed_after_the_kill_is_decoded_again(tmp_path, monkeypatch):
    params = mixed_inputs(tmp_path)
    kill_midway(params, tmp_path / "ingested", tmp_path)
    write_png(tmp_path / "data" / "images" / "s1_1.png", noise(999))  # row 1: in finished shard 0

    writes = CountingWrites(monkeypatch)
    resumed = load_ingested(ingest.run(params, tmp_path / "ingested"))

    assert writes.decoded == [0, 2, 3, 4]
    fresh = load_ingested(ingest.run(params, tmp_path / "fresh"))
    np.testing.assert_array_equal(resumed.images, fresh.images)


def test_after_a_bad_file_is_fixed_only_its_shard_is_decoded_again(tmp_path, monkeypatch):
    tree = class_tree(tmp_path / "tree", {"normal": 6, "utd": 5})
    bad = tree / "utd" / "utd_002.png"
    bad.write_bytes(b"")
    params = tiny_params(tree, data={"shard_size": SHARD_SIZE})
    with pytest.raises(DataError, match="utd_002.png"):
        ingest.run(params, tmp_path / "ingested")

    write_png(bad, noise(77))
    writes = CountingWrites(monkeypatch)
    ingest.run(params, tmp_path / "ingested")

    assert writes.decoded == [2], "rows 8-10 (utd_002 is row 8) are the only shard redone"


def test_decoding_workers_write_the_same_cache_as_one_process(tmp_path):
    in_process = ingest.run(mixed_inputs(tmp_path), tmp_path / "in-process")
    two_workers = ingest.run(mixed_inputs(tmp_path, decode_workers=2), tmp_path / "two-workers")
    same_ingest(two_workers, in_process)


def test_a_plan_decoded_in_parts_merges_into_the_same_ingest(tmp_path):
    """What a Kubeflow ParallelFor does: the plan is saved, each pod decodes its part, one task merges."""
    params = mixed_inputs(tmp_path)
    whole = ingest.run(params, tmp_path / "whole")
    ingest.plan(params).save(tmp_path / "plan")
    assert [(shard.start, len(shard.tasks)) for shard in IngestPlan.load(tmp_path / "plan").shards] == [
        (0, 4), (4, 4), (8, 1), (14, 4), (18, 3)
    ]  # fmt: skip
    parts = [
        ingest.decode_part(params, tmp_path / "plan", part, 3, tmp_path / f"pod-{part}") for part in range(3)
    ]

    merged = ingest.merge(params, tmp_path / "plan", parts, tmp_path / "merged")

    same_ingest(merged, whole)
    assert json.loads((merged / "ingest.json").read_text()) == json.loads((whole / "ingest.json").read_text())


def test_a_merge_missing_a_part_names_the_shard(tmp_path):
    params = mixed_inputs(tmp_path)
    ingest.plan(params).save(tmp_path / "plan")
    first = ingest.decode_part(params, tmp_path / "plan", 0, 2, tmp_path / "pod-0")
    with pytest.raises(DataError, match=r"ingest shard shard-00001 \(rows 4-7, e.g. .*s2_1.png\) is in none"):
        ingest.merge(params, tmp_path / "plan", [first], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


ASSEMBLE_AND_MEASURE = """
import json, resource, sys
from pathlib import Path
from renalmae.data.cache_writer import Shard, assemble_cache
from renalmae.data.decode import DecodeTask

shards_dir, out, n_shards, rows, size = Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:6])
shards = [Shard(i, tuple(DecodeTask(i * rows + r, "x", None) for r in range(rows))) for i in range(n_shards)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assemble_cache(out, n_shards * rows, size, [(shard, shards_dir) for shard in shards])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_growth_bytes": (after - before) * 1024}))
"""


def test_the_cache_is_assembled_in_bounded_memory(tmp_path):
    n_shards, rows, size = 6, 64, 512  # 6 shards of 16 MiB: a 96 MiB cache
    rng = np.random.default_rng(0)
    for index in range(n_shards):
        shard = tmp_path / "shards" / Shard(index, (DecodeTask(0, "x", None),)).name
        shard.mkdir(parents=True)
        np.save(shard / IMAGES_FILE, rng.integers(0, 256, (rows, size, size), dtype=np.uint8))
    script = tmp_path / "assemble.py"
    script.write_text(textwrap.dedent(ASSEMBLE_AND_MEASURE))
    out = tmp_path / "cache"
    out.mkdir()
    arguments = [str(tmp_path / "shards"), str(out), str(n_shards), str(rows), str(size)]
    measured = subprocess.run(
        [sys.executable, str(script), *arguments], check=True, capture_output=True, text=True, timeout=300
    )

    growth = json.loads(measured.stdout)["peak_rss_growth_bytes"]
    assert growth < 16 * 2**20, (
        f"assembling grew the peak RSS by {growth / 2**20:.0f} MiB (one shard: 16 MiB)"
    )
    images = np.load(out / IMAGES_FILE, mmap_mode="r")
    assert images.shape == (n_shards * rows, size, size)
    last = np.load(tmp_path / "shards" / "shard-00005" / IMAGES_FILE)
    np.testing.assert_array_equal(images[5 * rows :], last)
    masks = np.load(out / MASKS_FILE, mmap_mode="r")
    assert not masks[::37].any(), "rows without masks read as zeros"
    assert (out / MASKS_FILE).stat().st_blocks * 512 < 2**20, "and take no disk space (a sparse file)"
