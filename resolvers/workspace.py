"""The viewer and the workspace's settings."""
from __future__ import annotations

from strawberry.types import Info

from models import db
from resolvers.context import Context
from schema.common import to_global_id
from schema.enums import Role
from schema.workspace import Viewer, Workspace, WorkspaceSettings


async def _workspace_row(ctx: Context):  # noqa: ANN202 - asyncpg.Record
    return await ctx.loaders.workspace.load(ctx.workspace_id)


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
    return WorkspaceSettings.from_row(await _workspace_row(ctx))


async def user_list_column_keys(ctx: Context) -> list[str]:
    """The tag keys shown as columns of the user list, in order (from the request's cached settings)."""
    return db.json_value((await _workspace_row(ctx))["user_list_columns"])
