"""Queries and mutations on groups."""
from __future__ import annotations

from typing import Any

import asyncpg
import strawberry
from strawberry.types import Info

from models import db, memberships, orphans
from models.errors import DomainError
from models.groups import clean_labels, clean_name, create_group
from models.memberships import MembershipChange
from models.users import existing_group_ids
from resolvers.context import BadRequest, Context
from resolvers.selection import selected_ids_sql, selection
from schema.common import (Connection, Edge, UserError, decode_cursor, encode_cursor, from_global_id, page, page_size,
                           pks, to_global_id)
from schema.groups import (AssociationMethod, Group, GroupCreateInput, GroupDeleteInput, GroupDeletePayload,
                           GroupPayload, GroupsAssociateInput, GroupsChangeInput, GroupsMembershipPayload,
                           GroupsRemoveUsersInput, GroupUpdateInput)


async def group(info: Info, id: strawberry.ID) -> Group | None:
    ctx: Context = info.context
    ctx.require("groups:read")
    try:
        row = await ctx.loaders.group.load(from_global_id(id, "Group", ["id"])[1])
    except DomainError as exc:
        raise BadRequest(exc) from None
    return Group.from_row(row) if row else None


async def groups(info: Info, query: str | None = None, first: int | None = None,
                 after: str | None = None) -> Connection[Group]:
    """Groups by name (keyset on (lower(name), id)); `query` matches a name substring."""
    ctx: Context = info.context
    ctx.require("groups:read")
    try:
        limit = page_size(first)
        where, args = ["workspace_id = $1"], [ctx.workspace_id]
        if query:
            args.append(f"%{query.lower()}%")
            where.append(f"lower(name) LIKE ${len(args)}")
        count_where, count_args = list(where), list(args)
        if after:
            name, last_id = decode_cursor(after)
            args += [name, last_id]
            where.append(f"(lower(name), id) > (${len(args) - 1}::text, ${len(args)}::bigint)")
    except (DomainError, ValueError) as exc:
        raise BadRequest(exc if isinstance(exc, DomainError) else
                         DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"])) from None
    rows = await db.fetch(f"SELECT * FROM groups WHERE {' AND '.join(where)} ORDER BY lower(name), id"
                          f" LIMIT {limit + 1}", *args)
    edges = [Edge(cursor=encode_cursor([r["name"].lower(), r["id"]]), node=Group.from_row(r)) for r in rows[:limit]]

    async def count() -> int:
        return await db.fetchval(f"SELECT count(*) FROM groups WHERE {' AND '.join(count_where)}", *count_args)

    return page(edges, has_more=len(rows) > limit, after=after, count=count)


async def group_create(info: Info, input: GroupCreateInput) -> GroupPayload:
    ctx: Context = info.context
    ctx.require("groups:write")
    try:
        async with db.transaction() as conn:
            row = await create_group(ctx.workspace_id, input.name, input.description, input.labels,
                                     actor=ctx.principal.actor, conn=conn)
    except DomainError as exc:
        return GroupPayload(user_errors=[UserError.of(exc)])
    return GroupPayload(group=Group.from_row(row))


async def group_update(info: Info, input: GroupUpdateInput) -> GroupPayload:
    ctx: Context = info.context
    ctx.require("groups:write")
    sets, args = [], []
    try:
        group_id = from_global_id(input.id, "Group", ["id"])[1]
        if input.name is not strawberry.UNSET:
            args.append(clean_name(input.name or ""))
            sets.append(f"name = ${len(args) + 2}")
        if input.description is not strawberry.UNSET:
            args.append(input.description)
            sets.append(f"description = ${len(args) + 2}")
        if input.labels is not strawberry.UNSET:
            args.append(clean_labels(input.labels or []))
            sets.append(f"labels = ${len(args) + 2}::jsonb")
        row = await db.fetchrow(
            f"UPDATE groups SET {', '.join(sets) or 'name = name'} WHERE workspace_id = $1 AND id = $2 RETURNING *",
            ctx.workspace_id, group_id, *args)
        if row is None:
            raise DomainError("NOT_FOUND", "group not found", ["id"])
    except DomainError as exc:
        return GroupPayload(user_errors=[UserError.of(exc)])
    except asyncpg.UniqueViolationError:
        return GroupPayload(user_errors=[UserError(field=["name"], code="NAME_TAKEN",
                                                   message="another group has this name")])
    return GroupPayload(group=Group.from_row(row))


async def group_delete(info: Info, input: GroupDeleteInput) -> GroupDeletePayload:
    """Delete a group and its memberships; its users stay."""
    ctx: Context = info.context
    ctx.require("groups:write")
    try:
        group_id = from_global_id(input.id, "Group", ["id"])[1]
        async with db.transaction() as conn:
            deleted = await conn.fetchval("DELETE FROM groups WHERE workspace_id = $1 AND id = $2 RETURNING id",
                                          ctx.workspace_id, group_id)
            if deleted is None:
                raise DomainError("NOT_FOUND", "group not found", ["id"])
            await orphans.forget(ctx.workspace_id, "group", [deleted], conn)
    except DomainError as exc:
        return GroupDeletePayload(user_errors=[UserError.of(exc)])
    return GroupDeletePayload(deleted_group_id=input.id)


async def _group_ids(ctx: Context, ids: list[strawberry.ID], field: str, conn: Any) -> list[int]:
    group_ids = list(dict.fromkeys(pks(ids, "Group", [field]) or []))
    if not group_ids:
        raise DomainError("GROUP_REQUIRED", "name at least one group", [field])
    await existing_group_ids(ctx.workspace_id, group_ids, conn, field)
    return group_ids


def _membership_payload(change: MembershipChange, group: Any = None) -> GroupsMembershipPayload:
    errors = []
    if change.refused:
        errors.append(UserError(field=["target"], code="LAST_GROUP", message=(
            f"{change.refused} user(s) were left in the group: it is their last one and a contact must stay in"
            " at least one group (see refusedUserIds)")))
    return GroupsMembershipPayload(
        group=Group.from_row(group) if group else None, users_affected=change.users,
        memberships_added=change.added, memberships_removed=change.removed,
        refused_user_ids=[to_global_id("User", u) for u in change.refused_user_ids], user_errors=errors)


async def groups_associate(info: Info, input: GroupsAssociateInput) -> GroupsMembershipPayload:
    """Add the selected users to groups (APPEND) or make these their only groups (REPLACE)."""
    ctx: Context = info.context
    ctx.require("groups:write")
    try:
        b = await selection(ctx, input.target)
        async with db.transaction() as conn:
            group_ids = await _group_ids(ctx, input.group_ids, "groupIds", conn)
            change = await memberships.join(
                b, selected_ids_sql(b), group_ids, conn, actor=ctx.principal.actor,
                leave="others" if input.method is AssociationMethod.REPLACE else "none")
    except DomainError as exc:
        return GroupsMembershipPayload(user_errors=[UserError.of(exc)])
    return _membership_payload(change)


async def groups_change(info: Info, input: GroupsChangeInput) -> GroupsMembershipPayload:
    """Move the selected users to existing groups or to a new one."""
    ctx: Context = info.context
    ctx.require("groups:write")
    try:
        if (input.to_group_ids is None) == (input.new_group is None):
            raise DomainError("INVALID_INPUT", "give exactly one of toGroupIds or newGroup", ["toGroupIds"])
        b = await selection(ctx, input.target)
        from_group = from_global_id(input.from_group_id, "Group", ["fromGroupId"])[1] \
            if input.from_group_id is not None else None
        async with db.transaction() as conn:
            created = None
            if input.new_group is not None:
                created = await create_group(ctx.workspace_id, input.new_group.name, input.new_group.description,
                                             input.new_group.labels, actor=ctx.principal.actor, conn=conn,
                                             field=["newGroup", "name"])
                group_ids = [created["id"]]
            else:
                group_ids = await _group_ids(ctx, input.to_group_ids or [], "toGroupIds", conn)
            if from_group is not None:
                await existing_group_ids(ctx.workspace_id, [from_group], conn, "fromGroupId")
            change = await memberships.join(b, selected_ids_sql(b), group_ids, conn, actor=ctx.principal.actor,
                                            leave="from" if from_group is not None else "others",
                                            from_group_id=from_group)
    except DomainError as exc:
        return GroupsMembershipPayload(user_errors=[UserError.of(exc)])
    return _membership_payload(change, created)


async def groups_remove_users(info: Info, input: GroupsRemoveUsersInput) -> GroupsMembershipPayload:
    """Remove the selected users from a group; users for whom it is the last group stay (LAST_GROUP)."""
    ctx: Context = info.context
    ctx.require("groups:write")
    try:
        group_id = from_global_id(input.group_id, "Group", ["groupId"])[1]
        b = await selection(ctx, input.target)
        async with db.transaction() as conn:
            await existing_group_ids(ctx.workspace_id, [group_id], conn, "groupId")
            change = await memberships.leave(b, selected_ids_sql(b), group_id, conn, actor=ctx.principal.actor)
    except DomainError as exc:
        return GroupsMembershipPayload(user_errors=[UserError.of(exc)])
    return _membership_payload(change)
