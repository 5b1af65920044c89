"""User profiles (contacts and accounts)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models import db, resolution, tag_values
from models.enums import AccountType, UserSource
from models.errors import DomainError
from models.identities import IdentityKey
from models.profile import PROFILE_FIELDS  # noqa: F401  (re-exported)



class User(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    username = fields.CharField(max_length=128, null=True)  # immutable once set
    account_type = fields.CharEnumField(AccountType, max_length=16, default=AccountType.GENERAL,
                                        db_default=AccountType.GENERAL.value)
    display_name = fields.CharField(max_length=200, null=True)
    first_name = fields.CharField(max_length=100, null=True)
    last_name = fields.CharField(max_length=100, null=True)
    nickname = fields.CharField(max_length=100, null=True)
    gender = fields.CharField(max_length=16, null=True)
    birthday = fields.DateField(null=True)
    city = fields.CharField(max_length=100, null=True)
    country = fields.CharField(max_length=100, null=True)
    language = fields.CharField(max_length=35, null=True)
    avatar_url = fields.CharField(max_length=1000, null=True)
    status_message = fields.CharField(max_length=500, null=True)
    member_level = fields.CharField(max_length=50, null=True)
    level = fields.IntField(null=True)
    role = fields.CharField(max_length=50, null=True)
    friend_verification = fields.CharField(max_length=16, null=True)
    friending_allowed = fields.BooleanField(null=True)
    message_settings = fields.CharField(max_length=32, null=True)
    primary_channel = fields.CharField(max_length=16, null=True)
    source = fields.CharEnumField(UserSource, max_length=16, default=UserSource.INTERNAL,
                                  db_default=UserSource.INTERNAL.value)
    initial_source = fields.CharField(max_length=200, null=True)
    locked_fields = fields.JSONField(default=list, db_default="[]")
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)
    updated_at = fields.DatetimeField(db_default=Now(), auto_now=True)
    last_activity_at = fields.DatetimeField(null=True)

    class Meta:
        table = "users"
        # Keyset orders end in id. Username uniqueness and the indexes the ORM cannot describe (partial,
        # expression) are in migrations 0002 and 0006.
        indexes = (("workspace_id", "id"), ("workspace_id", "created_at", "id"), ("workspace_id", "updated_at", "id"))


MAX_ADMINS = 10
_USERNAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


async def _check_admin_limit(workspace_id: int, conn: Any) -> None:
    admins = await conn.fetchval(
        "SELECT count(*) FROM users WHERE workspace_id = $1 AND account_type = 'ADMIN'", workspace_id)
    if admins >= MAX_ADMINS:
        raise DomainError("ADMIN_LIMIT", f"a workspace has at most {MAX_ADMINS} ADMIN accounts", ["accountType"])


async def create_user(workspace_id: int, profile: dict[str, Any], *, username: str | None,
                      account_type: AccountType, identities: Sequence[IdentityKey], group_ids: Sequence[int],
                      tags: Sequence[tuple[dict[str, Any], list[str]]], source: UserSource, conn: Any,
                      identity_source: str | None = None) -> int:
    """Insert one user with identities, groups and hand-set tags; returns its id (in a transaction)."""
    if username is None or not username.strip():
        raise DomainError("USERNAME_REQUIRED", "username is required", ["username"])
    username = username.strip()
    if not _USERNAME.match(username):
        raise DomainError("INVALID_USERNAME", "username: 1-128 letters, digits or _ . @ + -", ["username"])
    if await conn.fetchval("SELECT 1 FROM users WHERE workspace_id = $1 AND username = $2", workspace_id, username):
        raise DomainError("USERNAME_TAKEN", f"username '{username}' is already used", ["username"])
    if account_type is AccountType.ADMIN:
        await _check_admin_limit(workspace_id, conn)
    taken = await resolution.owners(workspace_id, identities, conn)
    if taken:
        key = next(iter(taken))
        raise DomainError("IDENTITY_TAKEN", f"{key.type.value} {key.value} already belongs to another user",
                          ["identities"])
    await resolution._check_limit(workspace_id, 0, identities, conn)
    columns = ["workspace_id", "username", "account_type", "source", *profile]
    values = [workspace_id, username, account_type.value, source.value, *profile.values()]
    placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
    user_id = await conn.fetchval(
        f"INSERT INTO users ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id", *values)
    await resolution.attach(workspace_id, user_id, identities, conn, source=identity_source)
    await add_to_groups(workspace_id, [user_id], group_ids, conn)
    for tag, values_ in tags:
        await tag_values.set_values(workspace_id, user_id, tag["id"], values_, conn)
    return user_id


async def update_user(workspace_id: int, user_id: int, changes: dict[str, Any], *, unlock: Sequence[str],
                      identities: Sequence[IdentityKey], tags: Sequence[tuple[dict[str, Any], list[str]]],
                      conn: Any, actor: str | None = None) -> int:
    """Apply a hand edit: changed fields become locked against imports; returns the surviving id."""
    row = await conn.fetchrow("SELECT locked_fields FROM users WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
                              workspace_id, user_id)
    if row is None:
        raise DomainError("NOT_FOUND", "user not found", ["id"])
    locked = (set(db.json_value(row["locked_fields"])) | set(changes)) - set(unlock)
    sets = [f"{name} = ${i + 3}" for i, name in enumerate(changes)]
    sets.append(f"locked_fields = ${len(changes) + 3}::jsonb")
    await conn.execute(
        f"UPDATE users SET {', '.join(sets)}, updated_at = now() WHERE workspace_id = $1 AND id = $2",
        workspace_id, user_id, *changes.values(), orjson.dumps(sorted(locked)).decode())
    if changes:
        await conn.execute(
            "INSERT INTO activities (workspace_id, user_id, kind, payload, actor)"
            " VALUES ($1, $2, 'PROFILE_CHANGE', $3, $4)",
            workspace_id, user_id, orjson.dumps({"fields": sorted(changes)}).decode(), actor)
    for tag, values_ in tags:
        await tag_values.set_values(workspace_id, user_id, tag["id"], values_, conn)
    if identities:
        user_id = await resolution.attach(workspace_id, user_id, identities, conn, actor=actor)
    return user_id


async def add_to_groups(workspace_id: int, user_ids: Sequence[int], group_ids: Sequence[int], conn: Any,
                        source: str = "MANUAL") -> None:
    if not user_ids or not group_ids:
        return
    await conn.execute(
        "INSERT INTO group_members (workspace_id, group_id, user_id, source)"
        " SELECT $1, g, u, $4 FROM unnest($2::bigint[]) g CROSS JOIN unnest($3::bigint[]) u"
        " ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING",
        workspace_id, list(group_ids), list(user_ids), source)


async def existing_group_ids(workspace_id: int, group_ids: Sequence[int], conn: Any,
                             field: str = "groupIds") -> None:
    """Raise GROUP_NOT_FOUND unless every id is a group of the workspace.

    The groups stay key-share locked until the caller's transaction ends: group_members has no foreign
    key, so this is what makes a concurrent groupDelete wait for the memberships written meanwhile.
    """
    found = await conn.fetch("SELECT id FROM groups WHERE workspace_id = $1 AND id = ANY($2::bigint[]) FOR KEY SHARE",
                             workspace_id, list(set(group_ids)))
    if len(found) != len(set(group_ids)):
        raise DomainError("GROUP_NOT_FOUND", "one or more groups do not exist", [field])
