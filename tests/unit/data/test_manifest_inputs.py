"""Manifests as spreadsheets save them, paths as other platforms write them, files listed twice (issue 26,
kinds 1-3): each case lists or ingests the manifest a user would have and checks the items or the one
clear error (the manifest or row named, the fix given, nothing written)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingestkit import class_tree, noise, tiny_params, write_png

from renalmae.data.cache import load_ingested
from renalmae.data.sources import list_manifest, list_source
from renalmae.errors import DataError
from renalmae.steps import ingest

CLASSES = ["normal", "utd"]


def write_table(
    path: Path, rows: list[list[str]], encoding: str, separator: str = ",", **csv_options
) -> Path:
    """A manifest as a spreadsheet writes it: `rows` (header first) in `encoding` with `separator`."""
    text = io.StringIO(newline="")
    csv.writer(text, delimiter=separator, lineterminator="\r\n", **csv_options).writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))
    return path


def images(root: Path, names: list[str]) -> list[str]:
    for seed, name in enumerate(names):
        write_png(root / name, noise(seed))
    return names


def listed(manifest: Path) -> list[tuple[str, str]]:
    listing = list_manifest(manifest, CLASSES, "patient_id")
    assert not listing.problems, listing.problems
    return [(Path(item.source).name, item.label) for item in listing.items]


def problems(manifest: Path) -> str:
    listing = list_manifest(manifest, CLASSES, "patient_id")
    assert listing.problems and not listing.items
    return "\n".join(map(str, listing.problems))


def refused_ingest(tmp_path: Path, source: Path) -> str:
    with pytest.raises(DataError) as error:
        ingest.run(tiny_params(source), tmp_path / "ingested")
    assert not (tmp_path / "ingested").exists()
    return str(error.value)


# --- 1. manifests as spreadsheets save them ---------------------------------------------------------


def test_manifest_saved_as_windows_1252_is_ingested(tmp_path):
    names = images(tmp_path, ["Müller_1.png", "Müller_2.png", "Sørensen_1.png", "Sørensen_2.png"])
    rows = [["image", "label"], *([name, label] for name, label in zip(names, CLASSES * 2, strict=True))]
    manifest = write_table(tmp_path / "manifest.csv", rows, "cp1252")
    data = load_ingested(ingest.run(tiny_params(manifest), tmp_path / "ingested"))
    assert sorted(Path(source).name for source in data.table["source"]) == sorted(names)
    assert listed(manifest) == list(zip(names, CLASSES * 2, strict=True))


def test_manifest_in_another_8_bit_encoding_names_the_encoding_read_and_the_fix(tmp_path):
    """Old Excel for Mac writes Mac Roman: read as Windows-1252 the name is wrong, and the rule says why."""
    images(tmp_path, ["Müller_1.png"])
    manifest = write_table(tmp_path / "m.csv", [["image", "label"], ["Müller_1.png", "normal"]], "mac_roman")
    message = problems(manifest)
    assert "m.csv row 2" in message and "does not exist" in message
    assert "read as Windows-1252" in message and "CSV UTF-8" in message


def test_manifest_saved_as_excel_unicode_text_is_read(tmp_path):
    """Excel's "Unicode Text": UTF-16 little-endian with a byte-order mark, tab-separated, saved as .txt."""
    names = images(tmp_path, ["Ärztin_1.png", "Ärztin_2.png"])
    rows = [["image", "label", "patient_id"], [names[0], "normal", "P1"], [names[1], "utd", "P2"]]
    manifest = write_table(tmp_path / "manifest.txt", rows, "utf-16", "\t")
    assert manifest.read_bytes().startswith(b"\xff\xfe")
    listing = list_source(str(manifest), CLASSES, "patient_id")
    assert [(Path(item.source).name, item.label, item.group) for item in listing.items] == [
        (names[0], "normal", "P1"),
        (names[1], "utd", "P2"),
    ]


def test_semicolon_separated_manifest_of_european_excel_is_read(tmp_path):
    names = images(tmp_path, ["a.png", "b.png"])
    manifest = write_table(tmp_path / "m.csv", [["image", "label"], [names[0], "normal"], [names[1], "utd"]],
                           "utf-8-sig", ";")  # fmt: skip
    assert listed(manifest) == [("a.png", "normal"), ("b.png", "utd")]


def test_excel_sep_line_names_the_separator(tmp_path):
    images(tmp_path, ["a.png"])
    (tmp_path / "m.csv").write_text("sep=;\r\nimage;label\r\na.png;normal\r\n")
    assert listed(tmp_path / "m.csv") == [("a.png", "normal")]


def test_header_without_image_and_label_names_encoding_separator_and_columns_found(tmp_path):
    manifest = write_table(tmp_path / "m.csv", [["file", "class"], ["a.png", "normal"]], "cp1252", ";")
    message = problems(manifest)
    assert "m.csv" in message and "missing column(s) ['image', 'label']" in message
    assert "semicolon" in message and "['file', 'class']" in message and "UTF-8" in message
    assert "CSV UTF-8" in message  # the fix


def test_capitalised_column_names_are_named_with_the_rename(tmp_path):
    manifest = write_table(tmp_path / "m.csv", [["Image", "Label"], ["a.png", "normal"]], "utf-8")
    assert "rename ['Image', 'Label'] to ['image', 'label']" in problems(manifest)


@pytest.mark.parametrize(
    ("name", "head"), [("m.csv", b"PK\x03\x04"), ("m.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")]
)
def test_workbook_saved_under_a_csv_name_is_refused_with_the_fix(tmp_path, name, head):
    (tmp_path / name).write_bytes(head + bytes(100))
    message = refused_ingest(tmp_path, tmp_path / name)
    assert "m.csv" in message and "Excel workbook" in message and "CSV UTF-8" in message


def test_workbook_given_as_data_source_is_refused_with_the_fix(tmp_path):
    (tmp_path / "scans.xlsx").write_bytes(b"PK\x03\x04" + bytes(100))
    message = refused_ingest(tmp_path, tmp_path / "scans.xlsx")
    assert "scans.xlsx" in message and "workbook" in message and "CSV UTF-8" in message


def test_utf16_without_byte_order_mark_is_refused_with_the_fix(tmp_path):
    (tmp_path / "m.csv").write_bytes("image,label\r\na.png,normal\r\n".encode("utf-16-le"))
    assert "NUL bytes" in problems(tmp_path / "m.csv")


def test_empty_rows_a_spreadsheet_leaves_at_the_end_are_ignored(tmp_path):
    images(tmp_path, ["a.png"])
    write_table(tmp_path / "m.csv", [["image", "label", "fold"], ["a.png", "normal", "0"], ["", "", ""], []],
                "utf-8")  # fmt: skip
    assert listed(tmp_path / "m.csv") == [("a.png", "normal")]


ENCODINGS = ["utf-8", "utf-8-sig", "cp1252", "utf-16"]
# names every one of those encodings can write: Latin-1 letters and digits, spaces, quotes, separators
NAME = st.text(st.sampled_from("abcXYZ019 _-éüßØÆçñ,;'\"\t"), min_size=1, max_size=12).filter(
    lambda name: name.strip() == name and name not in (".", "..")
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(NAME, min_size=1, max_size=5, unique_by=lambda name: unicodedata.normalize("NFC", name)),
    encoding=st.sampled_from(ENCODINGS),
    separator=st.sampled_from([",", ";", "\t"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    labels=st.lists(st.sampled_from(CLASSES), min_size=5, max_size=5),
)
def test_any_encoding_separator_and_quoting_a_spreadsheet_writes_lists_the_same_rows(
    names, encoding, separator, quoting, labels
):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files = [f"{name}.png" for name in names]
        for file in files:
            (root / file).write_bytes(b"listed, not decoded")
        rows = [["image", "label"], *([file, label] for file, label in zip(files, labels, strict=False))]
        manifest = write_table(root / "manifest.csv", rows, encoding, separator, quoting=quoting)
        assert listed(manifest) == [(file, label) for file, label in zip(files, labels, strict=False)]


# --- 2. paths across platforms ----------------------------------------------------------------------


@pytest.mark.parametrize(("on_disk", "in_manifest"), [("NFD", "NFC"), ("NFC", "NFD")])
def test_name_in_another_unicode_normal_form_than_on_disk_is_found(tmp_path, on_disk, in_manifest):
    name = "Müller_1.png"
    folder = unicodedata.normalize(on_disk, "Größe")
    write_png(tmp_path / folder / unicodedata.normalize(on_disk, name), noise(1))
    write_png(tmp_path / "other.png", noise(2))
    cell = unicodedata.normalize(in_manifest, f"Größe/{name}")
    (tmp_path / "m.csv").write_text(f"image,label\n{cell},normal\nother.png,utd\n")
    data = ingest.run(tiny_params(tmp_path / "m.csv"), tmp_path / "ingested")
    assert data.is_dir()
    assert listed(tmp_path / "m.csv")[0] == (unicodedata.normalize(on_disk, name), "normal")


def test_windows_separators_in_a_manifest_are_read_as_folders(tmp_path):
    write_png(tmp_path / "scans" / "site a" / "a.png", noise(1))
    (tmp_path / "m.csv").write_text("image,label\nscans\\site a\\a.png,normal\n")
    assert listed(tmp_path / "m.csv") == [("a.png", "normal")]


def test_name_that_differs_only_by_letter_case_is_refused_naming_the_file_that_exists(tmp_path):
    write_png(tmp_path / "scans" / "IMG_0001.PNG", noise(1))
    (tmp_path / "m.csv").write_text("image,label\nscans/img_0001.png,normal\n")
    message = problems(tmp_path / "m.csv")
    assert "m.csv row 2" in message and str(tmp_path / "scans" / "IMG_0001.PNG") in message
    assert "letter case" in message


def test_windows_absolute_path_is_refused_with_the_fix(tmp_path):
    (tmp_path / "m.csv").write_text("image,label\nC:\\scans\\a.png,normal\n")
    message = problems(tmp_path / "m.csv")
    assert "Windows absolute path" in message and "relative to the manifest" in message


def test_class_folder_named_in_another_normal_form_than_the_class_is_its_class(tmp_path):
    classes = ["normal", "Nierenstörung"]
    class_tree(tmp_path / "tree", {"normal": 2, unicodedata.normalize("NFD", classes[1]): 2})
    listing = list_source(str(tmp_path / "tree"), classes, "patient_id")
    assert not listing.problems and {item.label for item in listing.items} == set(classes)


@settings(max_examples=40, deadline=None)
@given(
    stem=st.text(st.sampled_from("aouAOUäöüÄÖÜéèçñÅåØ_- 1"), min_size=1, max_size=10).filter(str.strip),
    on_disk=st.sampled_from(["NFC", "NFD"]),
    in_manifest=st.sampled_from(["NFC", "NFD"]),
)
def test_any_name_is_found_whichever_normal_form_disk_and_manifest_use(stem, on_disk, in_manifest):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        stem = stem.strip()
        (root / unicodedata.normalize(on_disk, f"{stem}.png")).write_bytes(b"x")
        cell = unicodedata.normalize(in_manifest, f"{stem}.png")
        (root / "m.csv").write_text(f'image,label\n"{cell}",utd\n', encoding="utf-8")
        assert listed(root / "m.csv") == [(unicodedata.normalize(on_disk, f"{stem}.png"), "utd")]


# --- 3. the same file listed twice ------------------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    ["scans/a.png", "./scans/a.png", "scans/../scans/a.png", "scans\\a.png", "link.png"],
    ids=["same-cell", "dot-slash", "dot-dot", "windows-separator", "symlink"],
)
def test_file_listed_twice_is_refused_where_the_manifest_is_read(tmp_path, second):
    write_png(tmp_path / "scans" / "a.png", noise(1))
    write_png(tmp_path / "scans" / "b.png", noise(2))
    os.symlink(tmp_path / "scans" / "a.png", tmp_path / "link.png")
    (tmp_path / "m.csv").write_text(
        f"image,label,series_id\nscans/a.png,normal,P1\nscans/b.png,utd,P2\n{second},normal,P1\n"
    )
    message = refused_ingest(tmp_path, tmp_path / "m.csv")
    assert "m.csv row 4" in message and "file of row 2 again" in message and "list each image once" in message
