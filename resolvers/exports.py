"""exportStart (an EXPORT job) and workspaceExportKey."""
from __future__ import annotations

import base64

import strawberry
from strawberry.types import Info

from models.enums import JobKind
from models.errors import DomainError
from models.exports import ColumnRequest, ExportParams, check_encryption, export_key, plan_columns
from models.filters import UserFilterSpec
from models.jobs import enqueue_attempt, insert_job, job_row
from models.workspaces import audit
from resolvers.context import Context
from resolvers.selection import selection
from resolvers.users import filter_spec
from schema.common import UserError, pks
from schema.exports import ExportStartInput, ExportStartPayload, WorkspaceExportKey
from schema.jobs import Job
from schema.users import UserSelector

# Reading the key opens every AES column ever exported: ADMIN only ("*"), or a key granted it explicitly.
EXPORT_KEY_PERMISSION = "export_key:read"
CELL_FORMAT = "base64(nonce[12 bytes] || ciphertext || tag[16 bytes]), no associated data"


async def export_start(info: Info, input: ExportStartInput) -> ExportStartPayload:
    """Check the selection and columns now (userErrors), then write the file in an EXPORT job."""
    ctx: Context = info.context
    ctx.require("users:export")
    try:
        spec = await selection_spec(ctx, input.target)
        encryption, errors = check_encryption([(e.type.value, e.encryption.value) for e in input.identity_encryption])
        plan = plan_columns(ctx.principal, column_request(input), encryption, await ctx.loaders.tag_definitions())
        if errors + plan.errors:
            return ExportStartPayload(user_errors=[UserError.of(e) for e in errors + plan.errors])
        params = ExportParams(filter=spec, columns=plan.columns, omitted=plan.omitted)
        job_id = await insert_job(ctx.workspace_id, JobKind.EXPORT, params.to_json(), created_by=ctx.principal.actor)
    except DomainError as exc:
        return ExportStartPayload(user_errors=[UserError.of(exc)])
    await enqueue_attempt(info.context.request.app.state.redis, job_id, 1)
    return ExportStartPayload(job=Job.from_row(await job_row(ctx.workspace_id, job_id)), omitted_columns=plan.omitted)


async def selection_spec(ctx: Context, target: UserSelector | None) -> UserFilterSpec | None:
    """The target as a filter the job can recompile; checked now by compiling it (UNKNOWN_TAG, INVALID_ID…)."""
    if target is None:
        return None
    await selection(ctx, target)  # the same checks and limits as the batch mutations
    if target.ids is not strawberry.UNSET and target.ids is not None:
        return UserFilterSpec(ids=pks(target.ids, "User", ["target", "ids"]))
    return await filter_spec(ctx, target.filter if target.filter is not strawberry.UNSET else None)


def column_request(input: ExportStartInput) -> ColumnRequest | None:
    if input.columns is None:
        return None
    c = input.columns
    return ColumnRequest(fields=c.fields, identities=[t.value for t in c.identities or []], tags=c.tags)


async def workspace_export_key(info: Info) -> WorkspaceExportKey:
    ctx: Context = info.context
    principal = ctx.require(EXPORT_KEY_PERMISSION)
    key = await export_key(ctx.workspace_id)
    await audit(principal, "export_key.read")
    return WorkspaceExportKey(algorithm="AES-256-GCM", key=base64.b64encode(key).decode(), cell_format=CELL_FORMAT)
