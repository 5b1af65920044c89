"""Tables to import: CSV (any usual encoding and delimiter) and spreadsheets, read row by row.

`open_table(path, name)` reads the header and detects the format; `Table.rows(start)` then streams the
data rows as lists of strings, each exactly as wide as the header. Blank rows are skipped, so row
indexes are stable between calls (the import checkpoint relies on that).
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from models.errors import DomainError

SAMPLE_BYTES = 1024 * 1024  # encoding and delimiter are decided on the file's first MiB
DELIMITERS = (",", ";", "\t", "|")
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
SPREADSHEET_SUFFIXES = {".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"}
_ZIP, _OLE = b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # xlsx/ods, and legacy xls

csv.field_size_limit(10 * 1024 * 1024)


class Table(ABC):
    """A header row and a stream of data rows."""

    format: str  # CSV | XLSX
    columns: list[str]
    encoding: str | None = None
    delimiter: str | None = None

    @abstractmethod
    def rows(self, start: int = 0) -> Iterator[list[str]]:
        """Data rows from index `start` (0 = the first row after the header)."""

    def estimated_rows(self) -> int | None:
        return None

    def _fit(self, cells: list[str]) -> list[str]:
        width = len(self.columns)
        if len(cells) == width:  # the usual case: no copy
            return cells
        return cells[:width] if len(cells) > width else cells + [""] * (width - len(cells))


def open_table(path: Path, name: str) -> Table:
    """The table in a stored file; DomainError UNSUPPORTED_FILE or INVALID_FILE when it is not one."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise DomainError("NOT_FOUND", f"the stored file '{name}' is gone") from None
    suffix = Path(name).suffix.lower()
    if head.startswith(_ZIP) or head.startswith(_OLE) or suffix in SPREADSHEET_SUFFIXES:
        if not (head.startswith(_ZIP) or head.startswith(_OLE)):
            raise DomainError("INVALID_FILE", f"'{name}' is not a valid spreadsheet")
        return SpreadsheetTable(path, name)
    if suffix and suffix not in CSV_SUFFIXES:
        raise DomainError("UNSUPPORTED_FILE", f"'{name}': only CSV, XLSX and XLS files can be imported")
    return CsvTable(path, name)


def _header(cells: list[str]) -> list[str]:
    names = [c.strip().lstrip("\ufeff").strip() for c in cells]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DomainError("INVALID_FILE", "the file has no header row")
    return [n or f"Column {i + 1}" for i, n in enumerate(names)]


def _first(records: Iterator[list[str]], empty_message: str) -> list[str]:
    """The first record; closes the generator (and so its file) at once."""
    try:
        return next(records)
    except StopIteration:
        raise DomainError("INVALID_FILE", empty_message) from None
    finally:
        records.close()  # type: ignore[attr-defined]


def _blank(cells: list[Any]) -> bool:
    return all(c is None or str(c).strip() == "" for c in cells)


# CSV

class CsvTable(Table):
    format = "CSV"

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        with path.open("rb") as f:
            sample = f.read(SAMPLE_BYTES)
        complete = len(sample) < SAMPLE_BYTES
        self.encoding = detect_encoding(sample, complete)
        text = _decode_sample(sample, self.encoding, complete)
        self.delimiter = sniff_delimiter(text)
        self._sample_lines = max(len(text.splitlines()), 1)
        self._sample_bytes = max(len(text.encode(self.encoding, errors="replace")), 1)
        self.columns = _header(_first(self._records(), f"'{name}' is empty"))

    def _records(self) -> Iterator[list[str]]:
        """Every non-blank record, header included."""
        with self.path.open(encoding=self.encoding, errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            try:
                for record in reader:
                    if "".join(record).strip():  # not blank (as _blank, for cells that are all strings)
                        yield record
            except csv.Error as exc:
                raise DomainError("INVALID_FILE", f"line {reader.line_num}: {exc}") from None

    def rows(self, start: int = 0) -> Iterator[list[str]]:
        for record in islice(self._records(), 1 + start, None):
            yield self._fit(record)

    def estimated_rows(self) -> int | None:
        """Lines in the file, extrapolated from the sample, less the header."""
        size = self.path.stat().st_size
        return max(round(size / self._sample_bytes * self._sample_lines) - 1, 0)


def detect_encoding(sample: bytes, complete: bool = False) -> str:
    """utf-16 (BOM), utf-8-sig (with or without BOM) when the sample is strict UTF-8, else gb18030 (GBK's superset).

    Bytes past the sample that do not fit the chosen encoding are read as U+FFFD rather than failing an import
    half-way through.
    """
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        raise DomainError("INVALID_FILE", "the file is binary, not a CSV text file")
    for encoding in ("utf-8-sig", "gb18030"):
        try:  # a sample cut mid-character is fine unless it is the whole file
            codecs.getincrementaldecoder(encoding)().decode(sample, final=complete)
            return encoding
        except UnicodeDecodeError:
            continue
    raise DomainError("INVALID_FILE", "the file is not text in UTF-8 or GB18030/GBK")


def _decode_sample(sample: bytes, encoding: str, complete: bool) -> str:
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=complete)
    if complete:
        return text.lstrip("\ufeff")
    last_newline = text.rfind("\n")  # only complete lines take part in sniffing and the estimate
    return (text[:last_newline + 1] if last_newline > 0 else text).lstrip("\ufeff")


def sniff_delimiter(text: str, lines: int = 50) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of fields most consistently.

    Quotes are respected (csv parses each candidate), so "Li, Lei" in a quoted cell does not vote for ','.
    """
    head = "".join(islice(text.splitlines(keepends=True), lines))
    best, best_score = ",", (0, 0)
    for delimiter in DELIMITERS:
        try:
            widths = [len(r) for r in csv.reader(head.splitlines(), delimiter=delimiter) if not _blank(r)]
        except csv.Error:
            continue
        if not widths or widths[0] < 2:
            continue
        score = (sum(1 for w in widths if w == widths[0]), widths[0])  # agreeing lines, then width
        if score > best_score:
            best, best_score = delimiter, score
    return best


# Spreadsheets (python-calamine: xlsx, xlsm, xlsb, xls, ods)

class SpreadsheetTable(Table):
    """The first visible worksheet. calamine keeps the sheet's cells in (compact, native) memory;
    rows become Python strings one at a time."""

    format = "XLSX"

    def __init__(self, path: Path, name: str) -> None:
        from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

        self.name = name
        try:
            self._workbook = CalamineWorkbook.from_path(str(path))
            sheets = self._workbook.sheets_metadata
            index = next((i for i, s in enumerate(sheets) if s.typ == SheetTypeEnum.WorkSheet
                          and s.visible == SheetVisibleEnum.Visible), 0)
            self._sheet = self._workbook.get_sheet_by_index(index)
        except (CalamineError, OSError, ValueError) as exc:
            raise DomainError("INVALID_FILE", f"'{name}' cannot be read as a spreadsheet: {exc}") from None
        self.columns = _header(_first(self._records(), f"'{name}' has no rows in its first sheet"))

    def _records(self) -> Iterator[list[str]]:
        for record in self._sheet.iter_rows():
            if not _blank(record):
                yield [cell_text(c) for c in record]

    def rows(self, start: int = 0) -> Iterator[list[str]]:
        for record in islice(self._records(), 1 + start, None):
            yield self._fit(record)

    def estimated_rows(self) -> int | None:
        return max(self._sheet.height - 1, 0)


def cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a person sees: 8613011112222.0 -> "8613011112222", dates in ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)
