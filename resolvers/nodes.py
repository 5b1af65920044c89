"""`node(id)`: any object by its global ID, within the caller's workspace only."""
from __future__ import annotations

import strawberry
from strawberry.types import Info

from models import db, timeline
from models.errors import DomainError
from models.jobs import job_row
from resolvers.context import Context
from schema.activities import Activity
from schema.common import Node, from_global_id
from schema.groups import Group
from schema.identities import Identity
from schema.jobs import Job
from schema.tags import Tag, TagGroup
from schema.users import User


async def node(info: Info, id: strawberry.ID) -> Node | None:
    ctx: Context = info.context
    try:
        type_name, pk = from_global_id(id)
    except DomainError:
        return None
    loaders = ctx.loaders
    if type_name == "User" and ctx.principal.can("users:read"):
        row = await loaders.user.load(pk)
        return User.from_row(row, ctx.principal) if row else None
    if type_name == "Group" and ctx.principal.can("groups:read"):
        row = await loaders.group.load(pk)
        return Group.from_row(row) if row else None
    if type_name == "Tag" and ctx.principal.can("users:read"):
        row = await loaders.tag.load(pk)
        return Tag.from_row(row) if row and ctx.principal.can_read_tag(row["key"]) else None
    if type_name == "TagGroup" and ctx.principal.can("tags:read"):
        row = await loaders.tag_group.load(pk)
        return TagGroup.from_row(row) if row else None
    if type_name == "Identity" and ctx.principal.can("users:read"):
        row = await db.fetchrow("SELECT * FROM identities WHERE workspace_id = $1 AND id = $2", ctx.workspace_id, pk)
        if row is None or (ctx.principal.role.value == "PARTNER" and not ctx.principal.can_read_identity(row["type"])):
            return None
        return Identity.from_row(row, ctx.principal)
    if type_name == "Activity" and ctx.principal.can("users:read") and ctx.principal.can_read_field("activities"):
        row = await timeline.by_id(ctx.workspace_id, pk)
        return Activity.from_row(row) if row else None
    if type_name == "Job" and ctx.principal.can("jobs:read"):
        row = await job_row(ctx.workspace_id, pk)
        return Job.from_row(row) if row else None
    return None
