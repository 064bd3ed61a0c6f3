"""Reading a manifest as spreadsheets save it, and finding the files it names as other platforms wrote them.

Text: a byte-order mark decides the encoding (Excel's "CSV UTF-8" and "Unicode text", UTF-16 with BOM);
without one the file is UTF-8 when it decodes as UTF-8, else Windows-1252 (Excel's plain "CSV" on a
Western Windows). The separator is the one of `, ; TAB |` that splits the header into the `image` and
`label` columns (Excel writes `;` where the decimal mark is a comma), or what an Excel `sep=` first line
says. Anything else is refused by `ManifestError` naming what was found and what to change.

Paths: a cell is looked up as written; when that file does not exist, each part is matched by its
Unicode normal form (a name composed (NFC) in the manifest and decomposed (NFD) on disk, as macOS
writes it, are one name) and Windows `\\` separators are read as `/`. A name that differs only by
letter case is not guessed: the rule says which file exists.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

REQUIRED_COLUMNS = ("image", "label")
SEPARATORS = (",", ";", "\t", "|")
SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
BYTE_ORDER_MARKS = (  # UTF-32 before UTF-16: FF FE 00 00 starts with FF FE
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # .xlsx (zip), .xls (OLE2)
SAVE_AS = "save it from the spreadsheet as 'CSV UTF-8 (comma delimited)'"


class ManifestError(ValueError):
    """A manifest that cannot be read as a table; the message names what was found and the fix."""


@dataclass(frozen=True)
class ManifestText:
    """A manifest's text, how it was read, and its separator."""

    text: str
    encoding: str
    separator: str

    @property
    def guessed(self) -> bool:
        """True when no byte-order mark or UTF-8 said the encoding (Windows-1252 is the guess)."""
        return self.encoding == "Windows-1252"

    def rows(self) -> csv.DictReader:
        return csv.DictReader(io.StringIO(self.text, newline=""), delimiter=self.separator)


def decode_manifest(data: bytes) -> tuple[str, str]:
    """(text, encoding name) of a manifest's bytes; raises `ManifestError` for a workbook or binary file."""
    if data.startswith(WORKBOOK_SIGNATURES):
        raise ManifestError(f"is an Excel workbook, not a text table; {SAVE_AS}")
    for mark, encoding in BYTE_ORDER_MARKS:
        if data.startswith(mark):
            try:
                return data.decode(encoding), encoding.upper().replace("-SIG", " with BOM")
            except UnicodeDecodeError as error:
                raise ManifestError(
                    f"starts with a {encoding} byte-order mark but byte {error.start} is not {encoding}; "
                    + SAVE_AS
                ) from None
    if b"\x00" in data:
        raise ManifestError(
            "holds NUL bytes without a byte-order mark (UTF-16 without BOM, or not a text file); "
            f"{SAVE_AS}, or as 'Unicode Text'"
        )
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("cp1252"), "Windows-1252"
        except UnicodeDecodeError as error:
            raise ManifestError(
                f"is neither UTF-8 (byte {utf8_error.start} is 0x{data[utf8_error.start]:02x}) nor "
                f"Windows-1252 (byte {error.start}); {SAVE_AS}"
            ) from None


def header_names(line: str, separator: str) -> list[str]:
    cells = next(csv.reader([line], delimiter=separator), [])
    return [cell.strip().lstrip("\ufeff").strip() for cell in cells]


def read_manifest_text(path: Path) -> ManifestText:
    """The text of manifest `path` with its encoding and separator; raises `ManifestError` (message without
    the path: the caller adds it) when no separator gives the `image` and `label` columns."""
    text, encoding = decode_manifest(path.read_bytes())
    first_line, _, rest = text.partition("\n")
    first_line = first_line.rstrip("\r").lstrip("\ufeff")
    if first_line.lower().startswith("sep=") and len(first_line) == 5:  # Excel's separator directive
        separator, text = first_line[4], rest
        first_line = text.partition("\n")[0].rstrip("\r")
        candidates: tuple[str, ...] = (separator,)
    else:
        candidates = SEPARATORS
    for separator in candidates:
        if set(REQUIRED_COLUMNS) <= set(header_names(first_line, separator)):
            return ManifestText(text.lstrip("\ufeff"), encoding, separator)
    separator = max(candidates, key=first_line.count)
    found = header_names(first_line, separator)
    missing = [name for name in REQUIRED_COLUMNS if name not in found]
    wrong_case = [name for name in found if name.lower() in REQUIRED_COLUMNS and name not in REQUIRED_COLUMNS]
    fix = (
        f"column names are lower case: rename {wrong_case} to {[name.lower() for name in wrong_case]}"
        if wrong_case
        else "a manifest needs image,label[,patient_id|series_id][,mask][,fold|split] in its first line, "
        f"separated by one of comma, semicolon, tab; {SAVE_AS}"
    )
    raise ManifestError(
        f"missing column(s) {missing}: read as {encoding}, the first line splits at its "
        f"{SEPARATOR_NAMES[separator]}s into {found}; {fix}"
    )


@dataclass
class FileFinder:
    """Finds the files a manifest names under `base` (see the module docstring); caches directory listings."""

    base: Path
    _listings: dict[Path, dict[str, list[str]]] = field(default_factory=dict)

    def find(self, cell: str) -> tuple[Path | None, str | None]:
        """(the file, None) or (None, the rule the cell breaks, with the fix)."""
        written = self.base / cell
        if written.is_file():
            return written, None
        windows = PureWindowsPath(cell)
        if windows.drive or cell.startswith("\\\\"):
            return None, (
                f"path '{cell}' is a Windows absolute path; write paths relative to the manifest "
                f"(folder {self.base})"
            )
        current = self.base
        for part in windows.parts if "\\" in cell else Path(cell).parts:
            current, rule = self._step(current, part, cell)
            if rule is not None:
                return None, rule
        if current.is_file():
            return current, None
        return None, f"{written} does not exist; fix the path (relative to {self.base})"

    def _step(self, folder: Path, part: str, cell: str) -> tuple[Path, str | None]:
        if part in (".", "..", "/") or (folder / part).exists():
            return folder / part, None
        names = self._names(folder)
        same = names.get(unicodedata.normalize("NFC", part), [])
        if len(same) == 1:
            return folder / same[0], None
        wrong_case = [
            name for key, spelled in names.items() if key.casefold() == part.casefold() for name in spelled
        ]
        if wrong_case:
            return folder, (
                f"{self.base / cell} does not exist, but {folder / wrong_case[0]} does (the names differ "
                "in letter case only); fix the name in the manifest"
            )
        return folder, f"{self.base / cell} does not exist; fix the path (relative to {self.base})"

    def _names(self, folder: Path) -> dict[str, list[str]]:
        """NFC form → the names in `folder` that have it (empty when `folder` is not a readable folder)."""
        if folder not in self._listings:
            names: dict[str, list[str]] = {}
            try:
                for name in os.listdir(folder):
                    names.setdefault(unicodedata.normalize("NFC", name), []).append(name)
            except OSError:
                pass
            self._listings[folder] = names
        return self._listings[folder]
