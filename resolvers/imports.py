"""Uploads and imports: uploadCreate, importPreview."""
from __future__ import annotations

import asyncio

import asyncpg
import strawberry
from strawberry.types import Info

from models import files
from models.errors import DomainError, NotFound
from models.import_mapping import ColumnMapping, ImportTarget, valid_region
from models.import_preview import build_preview
from resolvers.context import Context
from resolvers.workspace import default_region
from schema.common import UserError, from_global_id
from schema.imports import (ColumnMappingInput, ImportPreview, ImportPreviewInput, ImportPreviewPayload,
                            UploadCreateInput, UploadCreatePayload)
from schema.jobs import File


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
    return [ColumnMapping(column=m.column, target=ImportTarget(m.target), field=_snake(m.field) if m.field else None,
                          identity_type=m.identity_type, tag_key=m.tag_key, region=m.region) for m in inputs]


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
