"""Queries and mutations on tag groups and tags."""
from __future__ import annotations

import re

import asyncpg
import orjson
import strawberry
from strawberry.types import Info

from models import db, orphans, tag_values
from models.enums import TagType as TagTypeEnum
from models.errors import DomainError
from models.tag_values import validate
from resolvers.context import Context
from resolvers.selection import selected_ids_sql, selection
from schema.common import UserError, from_global_id
from schema.tags import (ConflictPolicy, Tag, TagCreateInput, TagDeleteInput, TagDeletePayload, TagGroup,
                         TagGroupCreateInput, TagGroupPayload, TagPayload, TagUpdateInput, UsersTagInput,
                         UsersTagPayload, UsersUntagInput)

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


async def tag_groups(info: Info) -> list[TagGroup]:
    ctx: Context = info.context
    ctx.require("tags:read")
    rows = await db.fetch("SELECT * FROM tag_groups WHERE workspace_id = $1 ORDER BY name", ctx.workspace_id)
    return [TagGroup.from_row(r) for r in rows]


async def tags(info: Info, keys: list[str] | None = None) -> list[Tag]:
    ctx: Context = info.context
    ctx.require("users:read")
    rows = await db.fetch("SELECT * FROM tags WHERE workspace_id = $1 AND ($2::text[] IS NULL OR key = ANY($2))"
                          " ORDER BY key", ctx.workspace_id, keys)
    return [Tag.from_row(r) for r in rows if ctx.principal.can_read_tag(r["key"])]


async def tag_group_create(info: Info, input: TagGroupCreateInput) -> TagGroupPayload:
    ctx: Context = info.context
    ctx.require("tags:write")
    name = input.name.strip()
    if not name:
        return TagGroupPayload(user_errors=[UserError(field=["name"], code="NAME_REQUIRED", message="name is required")])
    try:
        row = await db.fetchrow("INSERT INTO tag_groups (workspace_id, name) VALUES ($1, $2) RETURNING *",
                                ctx.workspace_id, name)
    except asyncpg.UniqueViolationError:
        return TagGroupPayload(user_errors=[UserError(field=["name"], code="NAME_TAKEN",
                                                      message=f"a tag group named '{name}' exists")])
    return TagGroupPayload(tag_group=TagGroup.from_row(row))


def _allowed(values: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(cleaned) > 1000:
        raise DomainError("TOO_MANY_VALUES", "at most 1000 allowed values", ["allowedValues"])
    return cleaned


async def _tag_group_id(ctx: Context, global_id: strawberry.ID | None) -> int | None:
    if global_id is None:
        return None
    pk = from_global_id(global_id, "TagGroup", ["tagGroupId"])[1]
    if await ctx.loaders.tag_group.load(pk) is None:
        raise DomainError("NOT_FOUND", "tag group not found", ["tagGroupId"])
    return pk


async def tag_create(info: Info, input: TagCreateInput) -> TagPayload:
    ctx: Context = info.context
    ctx.require("tags:write")
    try:
        key = input.key.strip()
        if not _KEY.match(key):
            raise DomainError("INVALID_KEY", "a key is lower-case letters, digits and _, starting with a letter",
                              ["key"])
        if not input.name.strip():
            raise DomainError("NAME_REQUIRED", "name is required", ["name"])
        allowed = _allowed(input.allowed_values)
        if TagTypeEnum(input.type.value) is TagTypeEnum.MULTI_VALUE and not allowed:
            raise DomainError("ALLOWED_VALUES_REQUIRED", "a MULTI_VALUE tag needs its allowed values",
                              ["allowedValues"])
        if allowed and input.type.value in ("NUMBER", "BOOLEAN", "DATE"):
            raise DomainError("INVALID_ALLOWED_VALUES", f"a {input.type.value} tag takes no allowed values",
                              ["allowedValues"])
        row = await db.fetchrow(
            "INSERT INTO tags (workspace_id, key, name, type, allowed_values, tag_group_id)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING *",
            ctx.workspace_id, key, input.name.strip(), input.type.value, orjson.dumps(allowed).decode(),
            await _tag_group_id(ctx, input.tag_group_id))
    except DomainError as exc:
        return TagPayload(user_errors=[UserError.of(exc)])
    except asyncpg.UniqueViolationError:
        return TagPayload(user_errors=[UserError(field=["key"], code="KEY_TAKEN", message=f"tag '{key}' exists")])
    return TagPayload(tag=Tag.from_row(row))


async def tag_update(info: Info, input: TagUpdateInput) -> TagPayload:
    """Rename, regroup or change allowed values; values still held by users cannot be removed."""
    ctx: Context = info.context
    ctx.require("tags:write")
    try:
        tag_id = from_global_id(input.id, "Tag", ["id"])[1]
        current = await ctx.loaders.tag.load(tag_id)
        if current is None:
            raise DomainError("NOT_FOUND", "tag not found", ["id"])
        name = current["name"] if input.name is strawberry.UNSET else (input.name or "").strip()
        if not name:
            raise DomainError("NAME_REQUIRED", "name is required", ["name"])
        allowed = db.json_value(current["allowed_values"])
        if input.allowed_values is not strawberry.UNSET:
            allowed = _allowed(input.allowed_values or [])
            if current["type"] == "MULTI_VALUE" and not allowed:
                raise DomainError("ALLOWED_VALUES_REQUIRED", "a MULTI_VALUE tag needs its allowed values",
                                  ["allowedValues"])
            if allowed and current["type"] in ("NUMBER", "BOOLEAN", "DATE"):
                raise DomainError("INVALID_ALLOWED_VALUES", f"a {current['type']} tag takes no allowed values",
                                  ["allowedValues"])
            if allowed:
                in_use = await db.fetch(
                    "SELECT DISTINCT v FROM user_tags, unnest(\"values\") v WHERE workspace_id = $1 AND tag_id = $2"
                    " AND NOT v = ANY($3::text[]) LIMIT 10", ctx.workspace_id, tag_id, allowed)
                if in_use:
                    raise DomainError("VALUES_IN_USE", "users still hold values you removed: "
                                      + ", ".join(r["v"] for r in in_use), ["allowedValues"])
        group_id = current["tag_group_id"] if input.tag_group_id is strawberry.UNSET else \
            await _tag_group_id(ctx, input.tag_group_id)
        row = await db.fetchrow(
            "UPDATE tags SET name = $3, allowed_values = $4::jsonb, tag_group_id = $5"
            " WHERE workspace_id = $1 AND id = $2 RETURNING *",
            ctx.workspace_id, tag_id, name, orjson.dumps(allowed).decode(), group_id)
    except DomainError as exc:
        return TagPayload(user_errors=[UserError.of(exc)])
    return TagPayload(tag=Tag.from_row(row))


async def tag_delete(info: Info, input: TagDeleteInput) -> TagDeletePayload:
    """Delete a tag and every user's value of it."""
    ctx: Context = info.context
    ctx.require("tags:write")
    try:
        tag_id = from_global_id(input.id, "Tag", ["id"])[1]
        async with db.transaction() as conn:
            deleted = await conn.fetchval("DELETE FROM tags WHERE workspace_id = $1 AND id = $2 RETURNING id",
                                          ctx.workspace_id, tag_id)
            if deleted is None:
                raise DomainError("NOT_FOUND", "tag not found", ["id"])
            await orphans.forget(ctx.workspace_id, "tag", [deleted], conn)
    except DomainError as exc:
        return TagDeletePayload(user_errors=[UserError.of(exc)])
    return TagDeletePayload(deleted_tag_id=input.id)


async def _tag(ctx: Context, key: str) -> dict:
    tag = (await ctx.loaders.tag_definitions()).get(key)
    if tag is None or not ctx.principal.can_read_tag(key):
        raise DomainError("UNKNOWN_TAG", f"no tag with key '{key}'", ["key"])
    return tag


async def users_tag(info: Info, input: UsersTagInput) -> UsersTagPayload:
    """Set a tag's value on the selected users in one statement (seed 001's batch tag)."""
    ctx: Context = info.context
    ctx.require("tags:write")
    try:
        tag = await _tag(ctx, input.key)
        values = validate(tag, input.values, ["values"])
        b = await selection(ctx, input.target)
        async with db.transaction() as conn:
            changed = await tag_values.tag_selected(b, selected_ids_sql(b), tag["id"], values, conn,
                                                    locked=input.conflict_policy is ConflictPolicy.KEEP_MANUAL)
    except DomainError as exc:
        return UsersTagPayload(user_errors=[UserError.of(exc)])
    return UsersTagPayload(users_affected=changed)


async def users_untag(info: Info, input: UsersUntagInput) -> UsersTagPayload:
    ctx: Context = info.context
    ctx.require("tags:write")
    try:
        tag = await _tag(ctx, input.key)
        b = await selection(ctx, input.target)
        async with db.transaction() as conn:
            removed = await tag_values.untag_selected(b, selected_ids_sql(b), tag["id"], conn)
    except DomainError as exc:
        return UsersTagPayload(user_errors=[UserError.of(exc)])
    return UsersTagPayload(users_affected=removed)
