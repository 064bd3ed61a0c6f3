"""Listing the inputs named in params `data`: class-folder trees, manifest CSVs, pool folders, phantom URIs.

Listing reads no pixels. It turns each input into `SourceItem`s (one per image file, with label, group,
mask, given fold / split) and collects every rule a file or row breaks as a `Problem` rather than
stopping at the first, so the user sees all of them at once.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from renalmae.data.decode.dicom import dicom_content
from renalmae.data.manifest_file import SAVE_AS, FileFinder, ManifestError, read_manifest_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".txt")  # Excel saves "Unicode text" (UTF-16, tab-separated) as .txt
PHANTOM_SCHEME = "phantom://"
GROUP_COLUMNS = ("series_id", "patient_id")
MAX_LISTED_FILES = 10
SPLIT_VALUES = ("train", "test", "external")


@dataclass(frozen=True)
class Problem:
    """A file (or manifest row) that breaks a rule of the data contract."""

    where: str
    rule: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule}"


@dataclass(frozen=True)
class SourceItem:
    """One image file to ingest."""

    source: str
    label: str | None
    group: str | None
    mask: str | None
    fold: int | None
    split: str | None
    origin: str
    group_given: bool = False
    """True when `group` comes from a manifest column (an empty cell then stays null)."""


@dataclass
class Listing:
    items: list[SourceItem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def bad_files_message(problems: list[Problem]) -> str:
    """The bad-files report: each bad file (or manifest row) once with its rule(s), the first few listed."""
    rules: dict[str, list[str]] = {}
    for problem in problems:
        file_rules = rules.setdefault(problem.where, [])
        if problem.rule not in file_rules:
            file_rules.append(problem.rule)
    lines = [f"{where}: {'; '.join(file_rules)}" for where, file_rules in rules.items()]
    listed = "\n  ".join(lines[:MAX_LISTED_FILES])
    more = len(lines) - MAX_LISTED_FILES
    return (
        f"{len(lines)} bad input file(s); fix or remove them and run `renalmae ingest` again "
        f"(nothing was written):\n  {listed}" + (f"\n  ... and {more} more" if more > 0 else "")
    )


def is_phantom(uri: str) -> bool:
    return uri.startswith(PHANTOM_SCHEME)


def check_label(label: str, classes: list[str]) -> str | None:
    """The rule `label` breaks against `classes`, or None when it is one of them."""
    if label in classes:
        return None
    same_but_case = [name for name in classes if name.lower() == label.lower()]
    if same_but_case:
        return (
            f"label '{label}' differs from class '{same_but_case[0]}' only by case; "
            f"labels must match data.classes exactly"
        )
    return f"label '{label}' is not one of data.classes {classes}; fix the label or add the class to params"


def canonical_label(label: str, classes: list[str]) -> str:
    """`label` spelled as the class it names in another Unicode normal form (NFC / NFD), else as written."""
    composed = unicodedata.normalize("NFC", label)
    return next((name for name in classes if unicodedata.normalize("NFC", name) == composed), label)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _image_files(root: Path, listing: Listing) -> list[Path]:
    """Image files under `root` (any depth, sorted); any other visible file is a problem."""
    images = []
    for path in sorted(root.rglob("*")):
        if path.is_dir() or _is_hidden(path, root):
            continue
        # PACS exports name DICOM files without an extension (IM00000, 1.2.840...); a DICOMDIR indexes them
        content = None if path.suffix.lower() in IMAGE_SUFFIXES else dicom_content(path)
        if (content is None and path.suffix.lower() in IMAGE_SUFFIXES) or content == "image":
            images.append(path)
        elif content != "directory":
            allowed = ", ".join(IMAGE_SUFFIXES)
            listing.problems.append(
                Problem(str(path), f"not an image file (allowed: {allowed}, or DICOM of any name); remove it")
            )
    return images


def list_class_tree(root: Path, classes: list[str]) -> Listing:
    """`root/<class>/*.{png,jpg,jpeg,dcm}`: the folder name is the label."""
    listing = Listing()
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            listing.problems.append(
                Problem(str(entry), "file at the top of a class-folder tree; put images in root/<class>/")
            )
            continue
        label = canonical_label(entry.name, classes)
        rule = check_label(label, classes)
        if rule is not None:
            listing.problems.append(Problem(f"folder {entry}", rule))
            continue
        for path in _image_files(entry, listing):
            listing.items.append(
                SourceItem(
                    source=str(path),
                    label=label,
                    group=None,
                    mask=None,
                    fold=None,
                    split=None,
                    origin="labelled",
                )
            )
    if not listing.items and not listing.problems:
        listing.problems.append(Problem(str(root), f"no images found; expected {root}/<class>/*.png|jpg|dcm"))
    return listing


def _parse_fold(cell: str) -> int:
    value = float(cell)
    if not value.is_integer():
        raise ValueError(cell)
    return int(value)


def list_manifest(manifest: Path, classes: list[str], group_column: str) -> Listing:
    """A manifest CSV `image,label[,patient_id|series_id][,mask][,fold|split]`, paths relative to it.

    Read as spreadsheets save it and with paths found as other platforms write them (`manifest_file`);
    a file listed twice (under any spelling of its path) is a problem of the later row.
    """
    listing = Listing()
    try:
        table = read_manifest_text(manifest)
    except ManifestError as error:
        listing.problems.append(Problem(str(manifest), str(error)))
        return listing
    except OSError as error:
        listing.problems.append(Problem(str(manifest), f"cannot be read ({error.strerror}); fix data.source"))
        return listing
    reader = table.rows()
    columns = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = columns
    has_group = group_column in columns
    other_groups = [name for name in GROUP_COLUMNS if name in columns and name != group_column]
    if not has_group and group_column != "none" and other_groups:
        # grouping silently by image would let frames of one series leak across folds
        listing.problems.append(
            Problem(
                str(manifest),
                f"has column {other_groups[0]} but data.group_column is "
                f"'{group_column}'; set data.group_column: {other_groups[0]}",
            )
        )
        return listing
    finder = FileFinder(manifest.parent)
    listed_at: dict[str, int] = {}
    for row_number, row in enumerate(reader, start=2):  # row 1 is the header
        where = f"{manifest.name} row {row_number}"
        cells = {name: (value or "").strip() for name, value in row.items() if name is not None}
        if not any(cells.values()):
            continue  # a blank line or a row of empty cells, as spreadsheets leave at the end
        item_problems = []
        image = None
        if not cells["image"]:
            item_problems.append("image path is empty")
        else:
            image, rule = finder.find(cells["image"])
            if rule and table.guessed and not cells["image"].isascii():
                rule += f" (the manifest is not UTF-8 and was read as {table.encoding}: {SAVE_AS})"
            if rule:
                item_problems.append(f"image {rule}")
        if image is not None:
            first_row = listed_at.setdefault(os.path.realpath(image), row_number)
            if first_row != row_number:
                item_problems.append(
                    f"image {image} is the file of row {first_row} again; list each image once "
                    "(a repeated scan would count twice in every metric)"
                )
        label = canonical_label(cells["label"], classes)
        rule = check_label(label, classes) if label else "label is empty; every manifest row needs a label"
        if rule:
            item_problems.append(rule)
        mask = None
        if cells.get("mask"):
            mask, rule = finder.find(cells["mask"])
            if rule:
                item_problems.append(
                    f"mask {rule.replace('fix the path', 'fix the path or leave the cell empty')}"
                )
        fold = None
        if cells.get("fold"):
            try:
                fold = _parse_fold(cells["fold"])
            except ValueError:
                item_problems.append(f"fold '{cells['fold']}' is not an integer")
        split = cells.get("split") or None
        if split is not None and split not in SPLIT_VALUES:
            item_problems.append(f"split '{split}' is not one of {list(SPLIT_VALUES)}")
        if item_problems:
            listing.problems.extend(Problem(where, rule) for rule in item_problems)
            continue
        listing.items.append(
            SourceItem(
                source=str(image),
                label=label,
                group=(cells[group_column] or None) if has_group else None,
                mask=str(mask) if mask else None,
                fold=fold,
                split=split,
                origin="labelled",
                group_given=has_group,
            )
        )
    return listing


def list_pool_folder(root: Path) -> Listing:
    """An unlabelled pool: every image file under `root`, at any depth."""
    listing = Listing()
    for path in _image_files(root, listing):
        listing.items.append(
            SourceItem(
                source=str(path), label=None, group=None, mask=None, fold=None, split=None, origin="pool"
            )
        )
    if not listing.items and not listing.problems:
        listing.problems.append(Problem(str(root), "pool folder holds no images"))
    return listing


def list_source(source: str, classes: list[str], group_column: str) -> Listing:
    """The labelled source: a manifest CSV file or a class-folder tree (phantom URIs are not listed here)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return list_manifest(path, classes, group_column)
    if path.is_dir():
        return list_class_tree(path, classes)
    if path.is_file() and path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        rule = f"data.source is a spreadsheet workbook, not a manifest; {SAVE_AS} and set data.source to it"
        return Listing(problems=[Problem(source, rule)])
    return Listing(
        problems=[
            Problem(
                source,
                "data.source is not a manifest (.csv, .tsv, .txt), a folder or a phantom:// URI "
                "(or it does not exist); fix data.source",
            )
        ]
    )


def pool_overlap_problems(listings: list[tuple[str, str, Listing]]) -> list[Problem]:
    """A pool (data.pool entry) that is the labelled source itself, holds its images or masks, or repeats
    another pool, as one problem per pool naming the real cause. `listings`: (uri, origin, listing)."""
    labelled = [listing for _, origin, listing in listings if origin == "labelled"]
    images = {Path(item.source).resolve() for listing in labelled for item in listing.items}
    masks = {Path(item.mask).resolve() for listing in labelled for item in listing.items if item.mask}
    listed_by: dict[Path, str] = {}
    problems = []
    for uri, origin, listing in listings:
        if origin != "pool" or not listing.items:
            continue
        files = [Path(item.source).resolve() for item in listing.items]
        in_source = [path for path in files if path in images]
        in_masks = [path for path in files if path in masks]
        in_pools = sorted({listed_by[path] for path in files if path in listed_by})
        if len(in_source) == len(files):
            problems.append(
                Problem(
                    uri,
                    f"this data.pool entry is the labelled source itself: all its {len(files)} images are "
                    "images of data.source; remove it from data.pool (the development images of "
                    "data.source are pretrained on already)",
                )
            )
        elif in_source:
            problems.append(
                Problem(
                    uri,
                    f"this data.pool entry holds {len(in_source)} labelled images of data.source (e.g. "
                    f"{in_source[0]}); a pool takes unlabelled images only: point it at a folder of those",
                )
            )
        if in_masks:
            problems.append(
                Problem(
                    uri,
                    f"this data.pool entry holds {len(in_masks)} lesion masks of data.source (e.g. "
                    f"{in_masks[0]}); masks are not images to pretrain on: point it at the images only",
                )
            )
        if in_pools:
            problems.append(
                Problem(
                    uri,
                    f"this data.pool entry repeats images of data.pool entry {in_pools[0]}: list each once",
                )
            )
        for path in files:
            listed_by.setdefault(path, uri)
    return problems


def list_pool(pool: str) -> Listing:
    path = Path(pool)
    if path.is_dir():
        return list_pool_folder(path)
    return Listing(
        problems=[
            Problem(
                pool,
                "data.pool entry is not a folder or a phantom:// URI (or it does not exist); fix data.pool",
            )
        ]
    )
