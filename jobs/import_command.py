"""`roster import FILE`: the import job run in this process, with a progress bar on stderr.

The job is a normal IMPORT job (same checks, same engine, visible through `job(id)`), run here instead
of on a worker so that an operator can load a file from a shell.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, TextIO

from jobs.readers import open_table
from jobs.progress_bar import run_with_progress
from models import db, files
from models.enums import GroupSource, IdentityType, JobKind
from models.errors import DomainError
from models.groups import create_group
from models.import_mapping import (ColumnMapping, ImportTarget, column_rules, suggest_mapping, unmapped_columns,
                                   valid_region, validate_mapping)
from models.jobs import insert_job


def parse_map(spec: str, columns: list[str]) -> list[ColumnMapping]:
    """`0=NAME,phone=IDENTITY:PHONE,city=PROFILE:city,tier=TAG:tier,5=IGNORE`: column index or header."""
    mapping = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        column, _, target = item.partition("=")
        index = int(column) if column.strip().isdigit() else _header_index(column.strip(), columns)
        kind, _, arg = target.strip().partition(":")
        try:
            target_ = ImportTarget(kind.upper())
        except ValueError:
            raise DomainError("INVALID_MAPPING", f"'{kind}' is not a target ({', '.join(t.value for t in ImportTarget)})",
                              ["map"]) from None
        mapping.append(ColumnMapping(
            column=index, target=target_,
            field=arg if target_ is ImportTarget.PROFILE else None,
            identity_type=IdentityType(arg.upper()) if target_ is ImportTarget.IDENTITY and arg else None,
            tag_key=arg if target_ is ImportTarget.TAG else None, region=None))
    return mapping


def _header_index(name: str, columns: list[str]) -> int:
    try:
        return columns.index(name)
    except ValueError:
        raise DomainError("INVALID_COLUMN", f"no column named '{name}'", ["map"]) from None


async def import_file(workspace_id: int, path: Path, *, map_spec: str | None, groups: list[str],
                      new_group: str | None, overwrite: bool, region: str | None, source: str | None,
                      out: TextIO = sys.stderr) -> dict[str, Any]:
    """Store the file, check the mapping, run the job here; returns the finished job row."""
    workspace = await db.fetchrow("SELECT * FROM workspaces WHERE id = $1", workspace_id)
    if workspace is None:
        raise DomainError("NOT_FOUND", f"no workspace with id {workspace_id}", ["workspace"])
    region = (region or workspace["default_region"]).upper()
    if not valid_region(region):
        raise DomainError("INVALID_REGION", f"'{region}' is not a region code", ["region"])

    async def chunks() -> Any:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                yield block

    upload = await files.store_upload(workspace_id, path.name, chunks())
    table = open_table(files.path_of(upload), upload["name"])
    tags = {r["key"]: {**dict(r), "allowed_values": db.json_value(r["allowed_values"])}
            for r in await db.fetch("SELECT * FROM tags WHERE workspace_id = $1", workspace_id)}
    mapping = parse_map(map_spec, table.columns) if map_spec else suggest_mapping(table.columns, tags=tags)
    errors = validate_mapping(mapping, table.columns, tags) + unmapped_columns(mapping, table.columns,
                                                                               explicit=map_spec is not None)
    group_ids = [r["id"] for r in await db.fetch(
        "SELECT id FROM groups WHERE workspace_id = $1 AND name = ANY($2::text[])", workspace_id, groups)]
    if len(group_ids) != len(set(groups)):
        errors.append(DomainError("GROUP_NOT_FOUND", "no group named " + ", ".join(
            sorted(set(groups) - {r["name"] for r in await db.fetch(
                "SELECT name FROM groups WHERE id = ANY($1::bigint[])", group_ids)})), ["group"]))
    if not groups and not new_group and not any(m.target is ImportTarget.GROUP for m in mapping):
        errors.append(DomainError("GROUP_REQUIRED", "give --group, --new-group or a GROUP column", ["group"]))
    if errors:
        raise ImportRefused(errors)

    async with db.transaction() as conn:
        if new_group:
            group_ids.append((await create_group(workspace_id, new_group, None, [], actor="cli", conn=conn,
                                                 source=GroupSource.IMPORT))["id"])
        params = {"upload_file_id": upload["id"], "file_name": upload["name"], "default_region": region,
                  "duplicate_policy": "OVERWRITE" if overwrite else "IGNORE", "group_ids": group_ids,
                  "source": source or path.name, "rules": [dataclasses.asdict(r) for r in column_rules(mapping, tags)]}
        job_id = await insert_job(workspace_id, JobKind.IMPORT, params, created_by="cli", conn=conn)
    row = await run_with_progress(job_id, out, "rows")
    return dict(row)


class ImportRefused(Exception):
    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors = errors
