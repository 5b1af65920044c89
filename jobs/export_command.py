"""`roster export --out FILE`: an EXPORT job run in this process, with a progress bar on stderr.

The job is a normal EXPORT job (same columns, same writer, visible through `job(id)`). The command runs
with the rights of the workspace's ADMIN (whoever can run it can read the database anyway).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from jobs.progress_bar import run_with_progress
from models import db, files
from models.enums import IdentityType, JobKind, Role
from models.errors import DomainError
from models.exports import AES, NONE, ColumnRequest, ExportParams, Selection, plan_columns, tag_definitions
from models.filters import TagCondition, UserFilterSpec
from models.jobs import insert_job
from models.permissions import Principal


class ExportRefused(Exception):
    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors = errors


def parse_columns(spec: str) -> tuple[ColumnRequest, dict[str, str]]:
    """`id,displayName,PHONE:AES,EMAIL,tag:tier` -> the request and each identity type's encryption."""
    request = ColumnRequest(fields=[], identities=[], tags=[])
    encryption: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        head, _, arg = item.partition(":")
        if head.lower() == "tag":
            request.tags.append(arg)  # type: ignore[union-attr]
        elif head.upper() in IdentityType.__members__:
            method = (arg or NONE).upper()
            if method not in (NONE, AES):
                raise ExportRefused([DomainError("INVALID_COLUMNS", f"'{item}': encryption is NONE or AES",
                                                 ["columns"])])
            request.identities.append(head.upper())  # type: ignore[union-attr]
            encryption[head.upper()] = method
        else:
            request.fields.append(item)  # type: ignore[union-attr]
    return request, encryption


def parse_filter(text: str | None) -> dict[str, Any]:
    """A UserFilter as JSON, with GraphQL names ({"memberLevels": ["gold"], "tags": [...]}, global ids)."""
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ExportRefused([DomainError("INVALID_FILTER", f"--filter is not JSON: {exc}", ["filter"])]) from None
    if not isinstance(value, dict):
        raise ExportRefused([DomainError("INVALID_FILTER", "--filter is a JSON object (a UserFilter)", ["filter"])])
    return value


async def filter_spec(workspace_id: int, value: dict[str, Any], groups: list[str], tags: list[str]
                      ) -> UserFilterSpec | None:
    """The JSON filter plus `--group NAME` (in any) and `--tag key[=value]` conditions."""
    from schema.common import pks

    def dates(name: str) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value[name]) if value.get(name) else None

    spec = UserFilterSpec(
        ids=pks(value.get("ids"), "User", ["filter", "ids"]), query=value.get("query"),
        group_ids=pks(value.get("groupIds"), "Group", ["filter", "groupIds"]),
        not_in_group_ids=pks(value.get("notInGroupIds"), "Group", ["filter", "notInGroupIds"]),
        member_levels=value.get("memberLevels"), account_types=value.get("accountTypes"),
        sources=value.get("sources"),
        tags=[TagCondition(t["key"], t.get("op", "EQ"), t.get("values") or []) for t in value.get("tags") or []],
        created_after=dates("createdAfter"), created_before=dates("createdBefore"),
        last_activity_after=dates("lastActivityAfter"), last_activity_before=dates("lastActivityBefore"))
    if groups:
        rows = await db.fetch("SELECT id, name FROM groups WHERE workspace_id = $1 AND name = ANY($2::text[])",
                              workspace_id, groups)
        missing = sorted(set(groups) - {r["name"] for r in rows})
        if missing:
            raise ExportRefused([DomainError("GROUP_NOT_FOUND", f"no group named {', '.join(missing)}", ["group"])])
        spec.group_ids = (spec.group_ids or []) + [r["id"] for r in rows]
    for item in tags:
        key, has_value, tag_value = item.partition("=")
        spec.tags.append(TagCondition(key, "IN", [tag_value]) if has_value else TagCondition(key, "EXISTS"))
    return spec if value or groups or tags else None


async def export_to_file(workspace_id: int, out_path: Path, *, filter_json: str | None, groups: list[str],
                         tags: list[str], columns: str | None, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Check, run the job here, copy its ZIP to `out_path`; returns the finished job row."""
    workspace = await db.fetchrow("SELECT * FROM workspaces WHERE id = $1", workspace_id)
    if workspace is None:
        raise ExportRefused([DomainError("NOT_FOUND", f"no workspace with id {workspace_id}", ["workspace"])])
    tag_defs = await tag_definitions(workspace_id)
    try:
        spec = await filter_spec(workspace_id, parse_filter(filter_json), groups, tags)
        Selection(workspace_id, spec, tag_defs, workspace["default_region"]).count_sql()  # UNKNOWN_TAG, ...
    except DomainError as exc:
        raise ExportRefused([exc]) from None
    request, encryption = parse_columns(columns) if columns else (None, {})
    admin = Principal(workspace_id=workspace_id, key_id=0, key_name="cli", role=Role.ADMIN)
    plan = plan_columns(admin, request, encryption, tag_defs)
    if plan.errors:
        raise ExportRefused(plan.errors)
    params = ExportParams(filter=spec, columns=plan.columns, omitted=plan.omitted)
    job_id = await insert_job(workspace_id, JobKind.EXPORT, params.to_json(), created_by="cli")
    row = await run_with_progress(job_id, out, "users")
    if row["status"] == "SUCCEEDED":
        stored = await db.fetchrow("SELECT * FROM files WHERE id = $1", row["result_file_id"])
        await asyncio.to_thread(shutil.copyfile, files.path_of(stored), out_path)
    return dict(row)
