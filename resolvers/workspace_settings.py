"""`workspaceSettingsUpdate` (ADMIN) and `userListColumns`: the workspace's switches and user-list columns."""
from __future__ import annotations

import strawberry
from strawberry.types import Info

from models import db, workspace_settings
from models.errors import DomainError
from models.workspaces import audit
from resolvers.context import Context
from resolvers.workspace import user_list_column_keys
from schema.common import UserError
from schema.tags import Tag
from schema.workspace import WorkspaceSettings, WorkspaceSettingsPayload, WorkspaceSettingsUpdateInput

_GRAPHQL_NAMES = {"account_deletion_enabled": "accountDeletionEnabled", "user_list_columns": "userListColumns",
                  "default_region": "defaultRegion"}


async def workspace_settings_update(info: Info, input: WorkspaceSettingsUpdateInput) -> WorkspaceSettingsPayload:
    ctx: Context = info.context
    ctx.require("settings:write")
    # null, like a left-out field, keeps the current value
    given = {name: value for name in _GRAPHQL_NAMES
             if (value := getattr(input, name)) is not strawberry.UNSET and value is not None}
    try:
        tag_keys = (await ctx.loaders.tag_definitions()).keys() if "user_list_columns" in given else ()
        changes = workspace_settings.checked_changes(given, tag_keys)
        async with db.transaction() as conn:
            before, after = await workspace_settings.update(ctx.workspace_id, changes, conn)
            for name, (old, new) in workspace_settings.differences(before, after).items():
                await audit(ctx.principal, "workspace.settings.update", target=_GRAPHQL_NAMES[name], old=old,
                            new=new, conn=conn)
    except DomainError as exc:
        return WorkspaceSettingsPayload(user_errors=[UserError.of(exc)])
    ctx.loaders.workspace.prime(ctx.workspace_id, after, force=True)
    return WorkspaceSettingsPayload(workspace_settings=WorkspaceSettings.from_row(after))


async def user_list_columns(info: Info) -> list[Tag]:
    """The tags shown as columns of the user list, in the configured order (deleted tags drop out)."""
    ctx: Context = info.context
    ctx.require("users:read")
    tags = await ctx.loaders.tag_definitions()
    return [Tag.from_row(tags[key]) for key in await user_list_column_keys(ctx)
            if key in tags and ctx.principal.can_read_tag(key)]
