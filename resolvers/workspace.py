"""The viewer and the workspace's settings."""
from __future__ import annotations

from strawberry.types import Info

from models import db
from resolvers.context import Context
from schema.common import to_global_id
from schema.enums import Role
from schema.workspace import Viewer, Workspace, WorkspaceSettings


async def _workspace_row(ctx: Context):  # noqa: ANN202 - asyncpg.Record
    cached = getattr(ctx, "_workspace", None)
    if cached is None:
        cached = await db.fetchrow("SELECT * FROM workspaces WHERE id = $1", ctx.workspace_id)
        ctx._workspace = cached  # type: ignore[attr-defined]
    return cached


async def default_region(ctx: Context) -> str:
    return (await _workspace_row(ctx))["default_region"]


async def viewer(info: Info) -> Viewer:
    ctx: Context = info.context
    row = await _workspace_row(ctx)
    p = ctx.principal
    return Viewer(workspace=Workspace(id=to_global_id("Workspace", row["id"]), name=row["name"]),
                  api_key_name=p.key_name, role=Role(p.role.value), permissions=p.permissions)


async def workspace_settings(info: Info) -> WorkspaceSettings:
    ctx: Context = info.context
    ctx.require("settings:read")
    row = await _workspace_row(ctx)
    return WorkspaceSettings(default_region=row["default_region"],
                             account_deletion_enabled=row["account_deletion_enabled"],
                             user_list_columns=db.json_value(row["user_list_columns"]))
