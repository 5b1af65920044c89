"""Uploads and imports: uploadCreate, importPreview."""
from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import strawberry
from strawberry.types import Info

from jobs.readers import open_table
from models import db, files
from models.enums import GroupSource, JobKind
from models.errors import DomainError, NotFound
from models.groups import create_group
from models.import_mapping import (ColumnMapping, ImportTarget, column_rules, suggest_mapping, valid_region,
                                   unmapped_columns, validate_mapping)
from models.jobs import enqueue_attempt, insert_job, job_row
from models.users import existing_group_ids
from models.import_preview import build_preview
from resolvers.context import Context
from resolvers.workspace import default_region
from schema.common import UserError, from_global_id, pks, snake
from schema.groups import Group
from schema.imports import (ColumnMappingInput, ImportPreview, ImportPreviewInput, ImportPreviewPayload,
                            ImportStartInput, ImportStartPayload, UploadCreateInput, UploadCreatePayload)
from schema.jobs import File, Job


async def upload_create(info: Info, input: UploadCreateInput) -> UploadCreatePayload:
    ctx: Context = info.context
    ctx.require("imports:write")
    try:
        row = await files.store_upload(ctx.workspace_id, input.file.filename or "", files.read_chunks(input.file))
    except DomainError as exc:
        return UploadCreatePayload(user_errors=[UserError.of(exc)])
    return UploadCreatePayload(upload=File.from_row(row))


async def import_preview(info: Info, input: ImportPreviewInput) -> ImportPreviewPayload:
    ctx: Context = info.context
    ctx.require("imports:write")
    try:
        upload = await upload_row(ctx, input.upload_id)
        region = await region_input(ctx, input.default_region)
        mapping = mapping_from_input(input.mapping) if input.mapping is not None else None
        tags = await ctx.loaders.tag_definitions()
        preview = await asyncio.to_thread(build_preview, files.path_of(upload), upload["name"], mapping, tags, region)
    except DomainError as exc:
        return ImportPreviewPayload(user_errors=[UserError.of(exc)])
    return ImportPreviewPayload(preview=ImportPreview.of(preview),
                                user_errors=[UserError.of(e) for e in preview.mapping_errors])


async def upload_row(ctx: Context, upload_id: strawberry.ID, field: str = "uploadId") -> asyncpg.Record:
    """The caller's uploaded file (NOT_FOUND for another workspace's, an expired one or a job's output)."""
    row = await files.file_row(ctx.workspace_id, from_global_id(upload_id, "File", [field])[1])
    if row is None or row["kind"] != "UPLOAD":
        raise NotFound("upload", [field])
    return row


async def region_input(ctx: Context, region: str | None, field: str = "defaultRegion") -> str:
    if region is None:
        return await default_region(ctx)
    if not valid_region(region):
        raise DomainError("INVALID_REGION", f"'{region}' is not a region code such as CN or US", [field])
    return region.upper()


def mapping_from_input(inputs: list[ColumnMappingInput]) -> list[ColumnMapping]:
    """The domain mapping (profile fields may be given as memberLevel or member_level)."""
    return [ColumnMapping(column=m.column, target=ImportTarget(m.target), field=snake(m.field) if m.field else None,
                          identity_type=m.identity_type, tag_key=m.tag_key, region=m.region) for m in inputs]


async def import_start(info: Info, input: ImportStartInput) -> ImportStartPayload:
    """Validate the mapping and groups now (userErrors), then run the import as a background job."""
    ctx: Context = info.context
    ctx.require("imports:write")
    try:
        upload = await upload_row(ctx, input.upload_id)
        region = await region_input(ctx, input.default_region)
        table = await asyncio.to_thread(open_table, files.path_of(upload), upload["name"])
        tags = await ctx.loaders.tag_definitions()
        if input.mapping is not None:
            mapping = mapping_from_input(input.mapping)
        else:
            mapping = suggest_mapping(table.columns, tags=tags)
        errors = validate_mapping(mapping, table.columns, tags) + unmapped_columns(mapping, table.columns,
                                                                           explicit=input.mapping is not None)
        group_ids = pks(input.group_ids, "Group", ["groupIds"]) or []
        if not group_ids and input.new_group is None and not any(m.target is ImportTarget.GROUP for m in mapping):
            errors.append(DomainError("GROUP_REQUIRED", "imported contacts must be associated with at least one "
                                      "group: give groupIds, newGroup or a GROUP column", ["groupIds"]))
        if errors:
            return ImportStartPayload(user_errors=[UserError.of(e) for e in errors])
        source = (input.source or upload["name"]).strip()[:200] or upload["name"]
        async with db.transaction() as conn:
            if group_ids:
                await existing_group_ids(ctx.workspace_id, group_ids, conn)
            group = None
            if input.new_group is not None:
                group = await create_group(ctx.workspace_id, input.new_group.name, input.new_group.description,
                                           input.new_group.labels, actor=ctx.principal.actor, conn=conn,
                                           source=GroupSource.IMPORT, field=["newGroup", "name"])
                group_ids.append(group["id"])
            params = {"upload_file_id": upload["id"], "file_name": upload["name"], "default_region": region,
                      "duplicate_policy": input.duplicate_policy.value, "group_ids": group_ids, "source": source,
                      "rules": [dataclasses.asdict(r) for r in column_rules(mapping, tags)]}
            job_id = await insert_job(ctx.workspace_id, JobKind.IMPORT, params, created_by=ctx.principal.actor,
                                      conn=conn)
    except DomainError as exc:
        return ImportStartPayload(user_errors=[UserError.of(exc)])
    await enqueue_attempt(info.context.request.app.state.redis, job_id, 1)  # after the commit: the row exists
    return ImportStartPayload(job=Job.from_row(await job_row(ctx.workspace_id, job_id)),
                              group=Group.from_row(group) if group else None)

