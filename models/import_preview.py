"""What an import would do with the first rows of a file, without writing anything.

Cells are parsed one by one (so every problem of a row shows, not only the first), and each row is
also judged by the import engine's own `parse_row`, so the preview and the import agree.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from jobs.readers import Table, open_table
from models.enums import IdentityType
from models.errors import DomainError
from models.identities import InvalidIdentity, normalize
from models.import_mapping import (ColumnMapping, DataType, ImportTarget, column_rules, detect_type,
                                   suggest_mapping, valid_region, validate_mapping)
from models.import_rows import NAME_TARGETS, ColumnRule, RowError, RowSpec, checked_length, parse_row, profile_value
from models.import_rows import _split as split_values  # the engine's splitting of multi-value cells
from models.tag_values import validate

PREVIEW_ROWS = 20
SAMPLE_ROWS = 200  # rows that decide the detected types and value-based suggestions
SAMPLE_VALUES = 5


@dataclass
class PreviewColumn:
    index: int
    name: str
    suggested: ColumnMapping
    detected_type: DataType
    sample_values: list[str]


@dataclass
class PreviewCell:
    column: int
    target: ImportTarget
    value: str | None  # normalised (E.164 phone, lower-case email, canonical tag values); None if empty or bad
    code: str | None = None
    message: str | None = None


@dataclass
class PreviewRow:
    row: int  # the row's number in the file as a spreadsheet shows it (the header is row 1)
    values: list[str]
    cells: list[PreviewCell]
    valid: bool


@dataclass
class Problem:
    row: int
    column: int | None  # None: the row as a whole (e.g. MISSING_IDENTIFIER)
    code: str
    message: str


@dataclass
class Preview:
    format: str
    encoding: str | None
    delimiter: str | None
    columns: list[PreviewColumn]
    mapping: list[ColumnMapping]
    rows: list[PreviewRow]
    problems: list[Problem]
    total_rows_estimate: int | None
    mapping_errors: list[DomainError] = field(default_factory=list)


def build_preview(path: Path, name: str, mapping: Sequence[ColumnMapping] | None,
                  tag_definitions: Mapping[str, Any], default_region: str, rows: int = PREVIEW_ROWS) -> Preview:
    """Blocking (reads the file): run it in a thread. DomainError when the file is not a readable table."""
    table = open_table(path, name)
    sample = list(islice(table.rows(), max(SAMPLE_ROWS, rows)))
    suggested = suggest_mapping(table.columns, sample, tag_definitions)
    used = list(mapping) if mapping is not None else suggested
    errors = validate_mapping(used, table.columns, tag_definitions)
    rules = [r for r in column_rules(used, tag_definitions) if r.column < len(table.columns)]
    preview_rows, problems = _parse_rows(sample[:rows], rules, default_region)
    return Preview(
        format=table.format, encoding=table.encoding, delimiter=table.delimiter,
        columns=[_column(table, i, suggested[i], sample) for i in range(len(table.columns))],
        mapping=used, rows=preview_rows, problems=problems, total_rows_estimate=_estimate(table, sample),
        mapping_errors=errors)


def _column(table: Table, index: int, suggested: ColumnMapping, sample: list[list[str]]) -> PreviewColumn:
    values = [r[index] for r in sample]
    filled = [v.strip() for v in values if v.strip()]
    return PreviewColumn(index=index, name=table.columns[index], suggested=suggested,
                         detected_type=detect_type(values), sample_values=filled[:SAMPLE_VALUES])


def _estimate(table: Table, sample: list[list[str]]) -> int | None:
    if len(sample) < SAMPLE_ROWS:  # the whole file was read
        return len(sample)
    return table.estimated_rows()


def _parse_rows(cells_by_row: list[list[str]], rules: list[ColumnRule],
                default_region: str) -> tuple[list[PreviewRow], list[Problem]]:
    spec = RowSpec(rules, default_region, source="preview")
    rows, problems = [], []
    for index, cells in enumerate(cells_by_row):
        number = index + 2
        region = default_region
        for rule in rules:
            if rule.target == ImportTarget.REGION.value and cells[rule.column].strip():
                region = cells[rule.column].strip().upper()
        parsed = [_cell(rule, cells[rule.column].strip(), region) for rule in rules]
        row_problems = [Problem(number, c.column, c.code, c.message or "") for c in parsed if c.code]
        verdict = parse_row(index, cells, spec)
        if isinstance(verdict, RowError) and verdict.code not in {p.code for p in row_problems}:
            row_problems.append(Problem(number, None, verdict.code, verdict.message))
        problems += row_problems
        rows.append(PreviewRow(row=number, values=cells, cells=parsed, valid=not isinstance(verdict, RowError)))
    return rows, problems


def _cell(rule: ColumnRule, value: str, region: str) -> PreviewCell:
    target = ImportTarget(rule.target)
    if not value:
        return PreviewCell(rule.column, target, None)
    try:
        return PreviewCell(rule.column, target, parse_cell(rule, value, region))
    except InvalidIdentity as exc:
        return PreviewCell(rule.column, target, None, exc.code, str(exc))
    except DomainError as exc:
        return PreviewCell(rule.column, target, None, exc.code, exc.message)


def parse_cell(rule: ColumnRule, value: str, region: str) -> str:
    """One non-empty cell as the import would store it (as text), or InvalidIdentity / DomainError."""
    if rule.target in NAME_TARGETS:
        return checked_length(NAME_TARGETS[rule.target], value)
    if rule.target == ImportTarget.PROFILE.value:
        parsed = profile_value(rule.field or "", value)
        if isinstance(parsed, bool):
            return "true" if parsed else "false"
        return parsed.isoformat() if isinstance(parsed, dt.date) else str(parsed)
    if rule.target == ImportTarget.IDENTITY.value:
        kind = IdentityType(rule.identity_type)
        parts = split_values(value) if kind is IdentityType.EMAIL else [value]
        return ", ".join(normalize(kind, part, region=rule.region or region).value for part in parts)
    if rule.target == ImportTarget.TAG.value:
        tag = rule.tag or {}
        values = split_values(value) if tag.get("type") == "MULTI_VALUE" else [value]
        return ", ".join(validate(tag, values))
    if rule.target == ImportTarget.GROUP.value:
        return ", ".join(checked_length("group", name) for name in split_values(value))
    if rule.target == ImportTarget.REGION.value:
        if not valid_region(value):
            raise DomainError("INVALID_REGION", f"'{value}' is not a region code such as CN or US")
        return value.upper()
    return value
