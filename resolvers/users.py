"""Queries and mutations on users: read, list, create, update, merge, contacts upsert."""
from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from strawberry.types import Info

from models import db, resolution, users as users_domain
from models.contacts import ContactRow, upsert_contacts
from models.enums import AccountType as AccountTypeEnum, UserSource as UserSourceEnum
from models.errors import DomainError
from models.filters import ORDER_COLUMNS, SqlBuilder, TagCondition, UserFilterSpec, compile_filter
from models.identities import IdentityKey, InvalidIdentity, normalize
from models.import_rows import checked_length
from models.profile import PROFILE_FIELDS
from models.tag_values import validate
from resolvers.context import BadRequest, Context
from resolvers.workspace import default_region
from schema.common import (Connection, Edge, UserError, camel, decode_cursor, encode_cursor, from_global_id, page,
                           page_size, pks, snake, to_global_id)
from schema.enums import DuplicatePolicy, IdentityType, OrderDirection, UserOrderField
from schema.identities import IdentityInput
from schema.users import (ContactsUpsertInput, ContactsUpsertPayload, ProfileInput, TagValueInput, User,
                          UserCreateInput, UserFilter, UserOrder, UserPayload, UsersMergeInput,
                          UsersMergePayload, UserUpdateInput)

_CURSOR_CASTS = {"ID": "bigint", "CREATED_AT": "timestamptz", "UPDATED_AT": "timestamptz",
                 "LAST_ACTIVITY_AT": "timestamptz", "DISPLAY_NAME": "text"}


async def load_user(ctx: Context, pk: int) -> User | None:
    row = await ctx.loaders.user.load(pk)
    return User.from_row(row, ctx.principal) if row else None


async def user(info: Info, id: strawberry.ID) -> User | None:
    ctx: Context = info.context
    ctx.require("users:read")
    try:
        return await load_user(ctx, from_global_id(id, "User", ["id"])[1])
    except DomainError as exc:
        raise BadRequest(exc) from None


async def user_by_identity(info: Info, type: IdentityType, value: str, region: str | None = None) -> User | None:
    ctx: Context = info.context
    ctx.require("users:read")
    try:
        key = normalize(type, value, region=region or await default_region(ctx))
    except InvalidIdentity:
        return None
    user_id = await db.fetchval(
        "SELECT user_id FROM identities WHERE workspace_id = $1 AND type = $2 AND channel = '' AND value = $3",
        ctx.workspace_id, key.type.value, key.value)
    return await load_user(ctx, user_id) if user_id else None


async def filter_spec(ctx: Context, f: UserFilter | None) -> UserFilterSpec | None:
    if f is None:
        return None
    return UserFilterSpec(
        ids=pks(f.ids, "User", ["filter", "ids"]), query=f.query,
        group_ids=pks(f.group_ids, "Group", ["filter", "groupIds"]),
        not_in_group_ids=pks(f.not_in_group_ids, "Group", ["filter", "notInGroupIds"]),
        member_levels=f.member_levels,
        account_types=[a.value for a in f.account_types] if f.account_types is not None else None,
        sources=[s.value for s in f.sources] if f.sources is not None else None,
        tags=[TagCondition(t.key, t.op.value, t.values or []) for t in f.tags or []],
        created_after=f.created_after, created_before=f.created_before,
        last_activity_after=f.last_activity_after, last_activity_before=f.last_activity_before)


async def compiled_filter(ctx: Context, f: UserFilter | None, id_bound: tuple[str, int] | None = None) -> SqlBuilder:
    """The filter as SQL over `users u`, shared by the list and by batch operations."""
    spec = await filter_spec(ctx, f)
    b = SqlBuilder(ctx.workspace_id, id_bound)
    tag_defs = await ctx.loaders.tag_definitions() if spec and spec.tags else {}
    compile_filter(spec, b, tag_defs, await default_region(ctx) if spec and spec.query else "US")
    return b


async def users(info: Info, filter: UserFilter | None = None, first: int | None = None, after: str | None = None,
                order_by: UserOrder | None = None) -> Connection[User]:
    ctx: Context = info.context
    ctx.require("users:read")
    try:
        limit = page_size(first)
        order = order_by or UserOrder()
        expr, cast = ORDER_COLUMNS[order.field.value], _CURSOR_CASTS[order.field.value]
        desc = order.direction is OrderDirection.DESC
        cursor = _cursor(after) if after else None
        by_id = order.field is UserOrderField.ID
        counted = await compiled_filter(ctx, filter)
        count_where, count_args = list(counted.where), list(counted.args)
        op = "<" if desc else ">"
        if cursor and by_id:  # the bound also goes into the filter's EXISTS subqueries (see SqlBuilder.bounded)
            b = await compiled_filter(ctx, filter, (op, cursor[1]))
            b.where.append(f"u.id {op} {b.arg(cursor[1])}::bigint")
        else:
            b = counted
            if cursor:
                b.where.append(f"({expr}, u.id) {op} ({b.arg(cursor[0])}::text::{cast}, {b.arg(cursor[1])}::bigint)")
    except DomainError as exc:
        raise BadRequest(exc) from None
    direction = "DESC" if desc else "ASC"
    rows = await db.fetch(
        f"SELECT u.*, ({expr})::text AS sort_key FROM users u WHERE {' AND '.join(b.where)}"
        f" ORDER BY {expr} {direction}{'' if expr == 'u.id' else f', u.id {direction}'} LIMIT {limit + 1}", *b.args)
    shown = rows[:limit]
    for row in shown:  # prime the loader so node(id) / user(id) in the same request hit no SQL
        ctx.loaders.user.prime(row["id"], row)
    edges = [Edge(cursor=encode_cursor([r["sort_key"], r["id"]]), node=User.from_row(r, ctx.principal))
             for r in shown]

    async def count() -> int:
        return await db.fetchval(f"SELECT count(*) FROM users u WHERE {' AND '.join(count_where)}", *count_args)

    return page(edges, has_more=len(rows) > limit, after=after, count=count)


def _cursor(after: str) -> tuple[str, int]:
    value = decode_cursor(after)
    if len(value) != 2 or not isinstance(value[1], int):
        raise DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"])
    return str(value[0]), value[1]


def profile_changes(data: ProfileInput) -> dict[str, Any]:
    """The profile fields the input sets (explicit null clears a field)."""
    changes: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        value = getattr(data, name)
        if value is strawberry.UNSET:
            continue
        if hasattr(value, "value"):  # enum
            value = value.value
        if isinstance(value, str):
            value = value.strip() or None
            if value is not None:
                try:
                    checked_length(name, value)
                except DomainError as exc:
                    raise DomainError(exc.code, exc.message, [camel(name)]) from None
        changes[name] = value
    if "level" in changes and changes["level"] is not None and changes["level"] < 0:
        raise DomainError("INVALID_VALUE", "level must not be negative", ["level"])
    return changes


async def identity_keys(ctx: Context, inputs: list[IdentityInput], field: str = "identities") -> list[IdentityKey]:
    region = await default_region(ctx)
    keys = []
    for i, item in enumerate(inputs):
        try:
            keys.append(normalize(item.type, item.value, region=item.region or region, channel=item.channel or "",
                                  encryption=item.encryption))
        except InvalidIdentity as exc:
            raise DomainError(exc.code, str(exc), [field, str(i), "value"]) from None
    return list(dict.fromkeys(keys))


async def tag_inputs(ctx: Context, inputs: list[TagValueInput]) -> list[tuple[dict[str, Any], list[str]]]:
    defs = await ctx.loaders.tag_definitions()
    result = []
    for i, item in enumerate(inputs):
        tag = defs.get(item.key)
        if tag is None or not ctx.principal.can_read_tag(item.key):
            raise DomainError("UNKNOWN_TAG", f"no tag with key '{item.key}'", ["tags", str(i), "key"])
        result.append((tag, validate(tag, item.values, ["tags", str(i), "values"])))
    return result


async def user_create(info: Info, input: UserCreateInput) -> UserPayload:
    ctx: Context = info.context
    ctx.require("users:write")
    if input.account_type is AccountTypeEnum.ADMIN:
        ctx.require("accounts:admin")
    try:
        changes = profile_changes(input)
        keys = await identity_keys(ctx, input.identities)
        tags = await tag_inputs(ctx, input.tags)
        group_ids = pks(input.group_ids, "Group", ["groupIds"]) or []
        async with db.transaction() as conn:
            if group_ids:
                await users_domain.existing_group_ids(ctx.workspace_id, group_ids, conn)
            user_id = await users_domain.create_user(
                ctx.workspace_id, changes, username=input.username, account_type=AccountTypeEnum(input.account_type),
                identities=keys, group_ids=group_ids, tags=tags, source=UserSourceEnum.INTERNAL, conn=conn,
                identity_source="api")
    except DomainError as exc:
        return UserPayload(user_errors=[UserError.of(exc)])
    return UserPayload(user=await load_user(ctx, user_id))


async def user_update(info: Info, input: UserUpdateInput) -> UserPayload:
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        user_id = from_global_id(input.id, "User", ["id"])[1]
        current = await ctx.loaders.user.load(user_id)
        if current is None:
            raise DomainError("NOT_FOUND", "user not found", ["id"])
        if input.username is not strawberry.UNSET and input.username != current["username"]:
            raise DomainError("USERNAME_IMMUTABLE", "username cannot be changed after creation", ["username"])
        if input.account_type is not strawberry.UNSET and input.account_type.value != current["account_type"]:
            raise DomainError("ACCOUNT_TYPE_IMMUTABLE", "accountType cannot be changed after creation",
                              ["accountType"])
        unknown = [f for f in input.unlock_fields if f not in PROFILE_FIELDS and snake(f) not in PROFILE_FIELDS]
        if unknown:
            raise DomainError("UNKNOWN_FIELD", f"not a profile field: {', '.join(unknown)}", ["unlockFields"])
        changes = profile_changes(input)
        keys = await identity_keys(ctx, input.identities)
        tags = await tag_inputs(ctx, input.tags)
        async with db.transaction() as conn:
            user_id = await users_domain.update_user(
                ctx.workspace_id, user_id, changes, unlock=[snake(f) for f in input.unlock_fields],
                identities=keys, tags=tags, conn=conn, actor=ctx.principal.actor)
    except DomainError as exc:
        return UserPayload(user_errors=[UserError.of(exc)])
    ctx.loaders.forget(ctx.loaders.user, user_id)
    return UserPayload(user=await load_user(ctx, user_id))


async def users_merge(info: Info, input: UsersMergeInput) -> UsersMergePayload:
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        ids = list(dict.fromkeys(pks(input.user_ids, "User", ["userIds"]) or []))
        if len(ids) < 2:
            raise DomainError("TOO_FEW_USERS", "merging needs at least two users", ["userIds"])
        async with db.transaction() as conn:
            survivor = await resolution.merge(ctx.workspace_id, ids, conn, actor=ctx.principal.actor)
    except DomainError as exc:
        return UsersMergePayload(user_errors=[UserError.of(exc)])
    ctx.loaders.forget(ctx.loaders.user, *ids)
    return UsersMergePayload(user=await load_user(ctx, survivor),
                             merged_user_ids=[to_global_id("User", i) for i in ids if i != survivor])


async def contacts_upsert(info: Info, input: ContactsUpsertInput) -> ContactsUpsertPayload:
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        group_ids = pks(input.group_ids, "Group", ["groupIds"]) or []
        rows = [ContactRow(phone=c.phone, name=c.name, region=c.region) for c in input.contacts]
        region = await default_region(ctx)  # before the transaction: inside it, the pool is the tx
        async with db.transaction() as conn:
            result = await upsert_contacts(
                ctx.workspace_id, rows, overwrite=input.duplicate_policy is DuplicatePolicy.OVERWRITE,
                group_ids=group_ids, default_region=region, conn=conn)
    except DomainError as exc:
        return ContactsUpsertPayload(user_errors=[UserError.of(exc)])
    unique = [uid for uid in dict.fromkeys(result.user_ids) if uid is not None]
    loaded = dict(zip(unique, await asyncio.gather(*(load_user(ctx, uid) for uid in unique)), strict=True))
    return ContactsUpsertPayload(
        users=[loaded.get(uid) if uid else None for uid in result.user_ids], created=result.created,
        updated=result.updated, skipped=result.skipped, user_errors=[UserError.of(e) for e in result.errors])
