"""Queries and mutations on groups."""
from __future__ import annotations

import asyncpg
import strawberry
from strawberry.types import Info

from models import db
from models.errors import DomainError
from resolvers.context import BadRequest, Context
from schema.common import Connection, Edge, PageInfo, UserError, decode_cursor, encode_cursor, from_global_id, page_size
from schema.groups import (Group, GroupCreateInput, GroupDeleteInput, GroupDeletePayload, GroupPayload,
                           GroupUpdateInput)


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

    return Connection(edges=edges, _count=count, page_info=PageInfo(
        has_next_page=len(rows) > limit, has_previous_page=after is not None,
        start_cursor=edges[0].cursor if edges else None, end_cursor=edges[-1].cursor if edges else None))


def _name(name: str) -> str:
    name = name.strip()
    if not name:
        raise DomainError("NAME_REQUIRED", "a group needs a name", ["name"])
    if len(name) > 200:
        raise DomainError("NAME_TOO_LONG", "a group name is at most 200 characters", ["name"])
    return name


async def group_create(info: Info, input: GroupCreateInput) -> GroupPayload:
    ctx: Context = info.context
    ctx.require("groups:write")
    try:
        row = await db.fetchrow(
            "INSERT INTO groups (workspace_id, name, description, labels, source, created_by)"
            " VALUES ($1, $2, $3, $4::jsonb, 'MANUAL', $5) RETURNING *",
            ctx.workspace_id, _name(input.name), input.description, _labels(input.labels), ctx.principal.actor)
    except DomainError as exc:
        return GroupPayload(user_errors=[UserError.of(exc)])
    except asyncpg.UniqueViolationError:
        return GroupPayload(user_errors=[UserError(field=["name"], code="NAME_TAKEN",
                                                   message=f"a group named '{input.name.strip()}' exists")])
    return GroupPayload(group=Group.from_row(row))


def _labels(labels: list[str]) -> str:
    import orjson

    return orjson.dumps(sorted({label.strip() for label in labels if label.strip()})).decode()


async def group_update(info: Info, input: GroupUpdateInput) -> GroupPayload:
    ctx: Context = info.context
    ctx.require("groups:write")
    sets, args = [], []
    try:
        group_id = from_global_id(input.id, "Group", ["id"])[1]
        if input.name is not strawberry.UNSET:
            args.append(_name(input.name or ""))
            sets.append(f"name = ${len(args) + 2}")
        if input.description is not strawberry.UNSET:
            args.append(input.description)
            sets.append(f"description = ${len(args) + 2}")
        if input.labels is not strawberry.UNSET:
            args.append(_labels(input.labels or []))
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
        deleted = await db.fetchval("DELETE FROM groups WHERE workspace_id = $1 AND id = $2 RETURNING id",
                                    ctx.workspace_id, group_id)
        if deleted is None:
            raise DomainError("NOT_FOUND", "group not found", ["id"])
    except DomainError as exc:
        return GroupDeletePayload(user_errors=[UserError.of(exc)])
    return GroupDeletePayload(deleted_group_id=input.id)
