"""identityAdd / identityRemove: identity resolution on a single user."""
from __future__ import annotations

from strawberry.types import Info

from models import db, resolution
from models.errors import DomainError
from resolvers.context import Context
from resolvers.users import identity_keys
from schema.common import UserError, from_global_id, to_global_id
from schema.identities import (Identity, IdentityAddInput, IdentityAddPayload, IdentityRemoveInput,
                               IdentityRemovePayload)


async def identity_add(info: Info, input: IdentityAddInput) -> IdentityAddPayload:
    """Give a user an identity; if another user holds it, the two are merged into the oldest."""
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        user_id = from_global_id(input.user_id, "User", ["userId"])[1]
        (key,) = await identity_keys(ctx, [input.identity], "identity")
        async with db.transaction() as conn:
            if not await conn.fetchval("SELECT 1 FROM users WHERE workspace_id = $1 AND id = $2",
                                       ctx.workspace_id, user_id):
                raise DomainError("NOT_FOUND", "user not found", ["userId"])
            before = set((await resolution.owners(ctx.workspace_id, [key], conn)).values()) | {user_id}
            survivor = await resolution.attach(ctx.workspace_id, user_id, [key], conn,
                                               source=input.identity.source or "api", actor=ctx.principal.actor)
            row = await conn.fetchrow(
                "SELECT * FROM identities WHERE workspace_id = $1 AND type = $2 AND channel = $3 AND value = $4",
                ctx.workspace_id, key.type.value, key.channel, key.value)
    except DomainError as exc:
        return IdentityAddPayload(user_errors=[UserError.of(exc)])
    return IdentityAddPayload(identity=Identity.from_row(row, ctx.principal), user_id=to_global_id("User", survivor),
                              merged_user_ids=[to_global_id("User", u) for u in sorted(before - {survivor})])


async def identity_remove(info: Info, input: IdentityRemoveInput) -> IdentityRemovePayload:
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        pk = from_global_id(input.id, "Identity", ["id"])[1]
        removed = await db.fetchval("DELETE FROM identities WHERE workspace_id = $1 AND id = $2 RETURNING id",
                                    ctx.workspace_id, pk)
        if removed is None:
            raise DomainError("NOT_FOUND", "identity not found", ["id"])
    except DomainError as exc:
        return IdentityRemovePayload(user_errors=[UserError.of(exc)])
    return IdentityRemovePayload(removed_identity_id=input.id)
