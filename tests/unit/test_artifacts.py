"""Artifact classes: the content hash that versions the ingested data, and the validation status."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from renalmae.artifacts import IngestedData, ValidationReport
from renalmae.params import params_from_dict
from renalmae.steps import ingest

TINY_DATA = {"source": "phantom://renal?n=30&seed=0", "pool": [], "image_size": 32, "decode_workers": 0}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest") / "ingested"
    return ingest.run(params_from_dict({"data": TINY_DATA, "train": {"progress": False}}), out)


def _rewrite_table(directory, edit):
    table = pd.read_parquet(directory / IngestedData.TABLE)
    edit(table).to_parquet(directory / IngestedData.TABLE, index=False)


def test_the_same_data_read_from_another_folder_has_the_same_version(ingested, tmp_path):
    copy = shutil.copytree(ingested, tmp_path / "elsewhere")

    def moved(table):
        table["source"] = "/mnt/renalmae/" + table["source"].astype(str)
        return table

    _rewrite_table(copy, moved)

    assert IngestedData(copy).content_hash() == IngestedData(ingested).content_hash()


def test_a_changed_label_changes_the_version(ingested, tmp_path):
    copy = shutil.copytree(ingested, tmp_path / "relabelled")

    def relabel(table):
        first = table.index[table["label"] == "normal"][0]
        table.loc[first, "label"] = "utd"
        return table

    _rewrite_table(copy, relabel)

    assert IngestedData(copy).content_hash() != IngestedData(ingested).content_hash()


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (None, "missing"),
        ("{not json", "missing"),
        ('{"success": false}', "failed"),
        ('{"success": true}', "passed"),
    ],
)
def test_validation_status_reads_the_summary(tmp_path, content, status):
    if content is not None:
        (tmp_path / ValidationReport.SUMMARY).write_text(content)

    assert ValidationReport(tmp_path).status() == status


def test_ingest_json_holds_no_timings(ingested):
    """Same data, same bytes: DVC hashes this folder, so a timing would make every run look new."""
    summary = json.loads((ingested / IngestedData.SUMMARY).read_text())
    assert not [key for key in summary if "second" in key]
