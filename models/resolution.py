"""Identity resolution (ID mapping): attach identities to users, merging users they join.

The rules (DESIGN.md): no identity known -> new user; all known ones on one user -> attach the
rest to it; known on several users -> merge them into the oldest, unless that would put more
than `max_per_type` identities of one type on a user, in which case nothing changes.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from models import orphans
from models.errors import DomainError
from models.identities import IdentityKey
from models.profile import PROFILE_FIELDS
from models.timeline import BUCKET_BITS

MAX_PER_TYPE = 5


async def owners(workspace_id: int, keys: Sequence[IdentityKey], conn: Any) -> dict[IdentityKey, int]:
    """Current owner of each key that is known (one query for the whole set)."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT i.type, i.channel, i.value, i.user_id FROM identities i"
        " JOIN unnest($2::text[], $3::text[], $4::text[]) AS k(type, channel, value)"
        "   ON i.type = k.type AND i.channel = k.channel AND i.value = k.value"
        # A stray identity (its user deleted, not yet swept) owns nothing; probed by id (see import_plan).
        " CROSS JOIN LATERAL (SELECT 1 FROM users u WHERE u.id = i.user_id) live"
        " WHERE i.workspace_id = $1",
        workspace_id, [k.type.value for k in keys], [k.channel for k in keys], [k.value for k in keys])
    by_triple = {(r["type"], r["channel"], r["value"]): r["user_id"] for r in rows}
    return {k: by_triple[(k.type.value, k.channel, k.value)] for k in keys
            if (k.type.value, k.channel, k.value) in by_triple}


async def attach(workspace_id: int, user_id: int, keys: Sequence[IdentityKey], conn: Any, *,
                 source: str | None = None, actor: str | None = None) -> int:
    """Give `user_id` the identities `keys`, merging any other users that own some of them.

    Returns the surviving user id (the oldest of the users involved). Must run in a transaction.
    Raises DomainError IDENTITY_LIMIT when the result would exceed the per-type limit.
    """
    # Identities have no foreign key (models.orphans): the user is locked, so a deletion waits for us.
    if await conn.fetchval("SELECT 1 FROM users WHERE workspace_id = $1 AND id = $2 FOR KEY SHARE",
                           workspace_id, user_id) is None:
        raise DomainError("NOT_FOUND", "user not found", ["userId"])
    known = await owners(workspace_id, keys, conn)
    involved = sorted({user_id, *known.values()})
    survivor = user_id
    if len(involved) > 1:
        survivor = await merge(workspace_id, involved, conn, actor=actor, extra_keys=keys)
    await _check_limit(workspace_id, survivor, [k for k in keys if k not in known], conn)
    new = [k for k in keys if k not in known]
    if new:
        await orphans.release_stray_keys(workspace_id, [(k.type.value, k.channel, k.value) for k in new], conn)
        await conn.execute(
            "INSERT INTO identities (workspace_id, user_id, type, channel, value, encryption, source)"
            " SELECT $1, $2, t, c, v, e, $7 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])"
            "   AS k(t, c, v, e)"
            " ON CONFLICT (workspace_id, type, channel, value) DO NOTHING",
            workspace_id, survivor, [k.type.value for k in new], [k.channel for k in new],
            [k.value for k in new], [k.encryption.value for k in new], source)
    if known:
        await conn.execute(
            "UPDATE identities SET last_seen_at = now() WHERE workspace_id = $1 AND user_id = $2"
            " AND (type, channel, value) IN (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]))",
            workspace_id, survivor, [k.type.value for k in known], [k.channel for k in known],
            [k.value for k in known])
    return survivor


async def _check_limit(workspace_id: int, user_id: int, new: Sequence[IdentityKey], conn: Any,
                       others: Sequence[int] = ()) -> None:
    rows = await conn.fetch(
        "SELECT type, count(*) AS n FROM identities WHERE workspace_id = $1 AND user_id = ANY($2::bigint[])"
        " GROUP BY type", workspace_id, [user_id, *others])
    counts = Counter({r["type"]: r["n"] for r in rows})
    counts.update(k.type.value for k in new)
    over = sorted(t for t, n in counts.items() if n > MAX_PER_TYPE)
    if over:
        raise DomainError("IDENTITY_LIMIT",
                          f"a user can have at most {MAX_PER_TYPE} identities of each type ({', '.join(over)})",
                          ["identities"])


async def merge(workspace_id: int, user_ids: Sequence[int], conn: Any, *, actor: str | None = None,
                extra_keys: Sequence[IdentityKey] = ()) -> int:
    """Merge users into the oldest one; returns its id. Must run inside a transaction."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE workspace_id = $1 AND id = ANY($2::bigint[])"
        " ORDER BY created_at, id FOR UPDATE", workspace_id, list(user_ids))
    if len(rows) != len(set(user_ids)):
        raise DomainError("NOT_FOUND", "user not found", ["userIds"])
    survivor, *others = [r["id"] for r in rows]
    if not others:
        return survivor
    # Identities of the incoming row that nobody owns yet also count towards the limit.
    known = await owners(workspace_id, extra_keys, conn)
    await _check_limit(workspace_id, survivor, [k for k in extra_keys if k not in known], conn, others)

    await conn.execute("UPDATE identities SET user_id = $2 WHERE workspace_id = $1 AND user_id = ANY($3::bigint[])",
                       workspace_id, survivor, others)
    # Memberships and tag values carry no foreign keys: lock their groups and tags (a deletion under way
    # is waited for) and copy only those that still exist.
    await conn.execute(
        "SELECT 1 FROM groups WHERE workspace_id = $1 AND id IN (SELECT group_id FROM group_members"
        " WHERE workspace_id = $1 AND user_id = ANY($2::bigint[])) FOR KEY SHARE", workspace_id, others)
    await conn.execute(
        "SELECT 1 FROM tags WHERE workspace_id = $1 AND id IN (SELECT tag_id FROM user_tags"
        " WHERE workspace_id = $1 AND user_id = ANY($2::bigint[])) FOR KEY SHARE", workspace_id, others)
    await conn.execute(
        "INSERT INTO group_members (workspace_id, group_id, user_id, source, added_at)"
        " SELECT workspace_id, group_id, $2, source, added_at FROM group_members gm"
        " WHERE workspace_id = $1 AND user_id = ANY($3::bigint[])"
        "   AND EXISTS (SELECT 1 FROM groups g WHERE g.workspace_id = $1 AND g.id = gm.group_id)"
        " ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING", workspace_id, survivor, others)
    # The survivor's tag values win; the others fill tags it has no value for (oldest first).
    await conn.execute(
        "INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked, updated_at)"
        " SELECT DISTINCT ON (tag_id) workspace_id, $2, tag_id, \"values\", source, locked, updated_at"
        " FROM user_tags ut WHERE workspace_id = $1 AND user_id = ANY($3::bigint[])"
        "   AND EXISTS (SELECT 1 FROM tags t WHERE t.workspace_id = $1 AND t.id = ut.tag_id) ORDER BY tag_id, user_id"
        " ON CONFLICT (workspace_id, user_id, tag_id) DO NOTHING", workspace_id, survivor, others)
    await conn.execute("UPDATE activities SET user_id = $2 WHERE workspace_id = $1 AND user_id = ANY($3::bigint[])",
                       workspace_id, survivor, others)
    fill = ", ".join(
        f"{f} = COALESCE(u.{f}, (SELECT o.{f} FROM users o WHERE o.workspace_id = $1 AND o.id = ANY($3::bigint[])"
        f" AND o.{f} IS NOT NULL ORDER BY o.created_at, o.id LIMIT 1))"
        for f in (*PROFILE_FIELDS, "initial_source"))
    usernames = await conn.fetch(
        "SELECT username FROM users WHERE workspace_id = $1 AND id = ANY($2::bigint[]) AND username IS NOT NULL"
        " ORDER BY created_at, id", workspace_id, others)
    await conn.execute("UPDATE users SET username = NULL WHERE workspace_id = $1 AND id = ANY($2::bigint[])",
                       workspace_id, others)
    await conn.execute(
        f"UPDATE users u SET {fill},"
        " username = COALESCE(u.username, $4),"
        " last_activity_at = GREATEST(u.last_activity_at, (SELECT max(o.last_activity_at) FROM users o"
        "   WHERE o.workspace_id = $1 AND o.id = ANY($3::bigint[]))),"
        " locked_fields = (SELECT COALESCE(jsonb_agg(DISTINCT f), '[]'::jsonb) FROM users o,"
        "   jsonb_array_elements_text(o.locked_fields::jsonb) f"
        "   WHERE o.workspace_id = $1 AND o.id = ANY(array_append($3::bigint[], $2::bigint))),"
        " updated_at = now()"
        " WHERE u.workspace_id = $1 AND u.id = $2",
        workspace_id, survivor, others, usernames[0]["username"] if usernames else None)
    await conn.execute(
        "INSERT INTO activities (workspace_id, user_id, kind, payload, actor) VALUES ($1, $2, 'MERGE', $3, $4)",
        workspace_id, survivor, orjson.dumps({"mergedUserIds": others}).decode(), actor)
    # Entries batch operations shared with the others become the survivor's own.
    await conn.execute(
        "INSERT INTO activities (workspace_id, user_id, kind, payload, occurred_at, actor, created_at)"
        " SELECT workspace_id, $2, kind, payload, occurred_at, actor, created_at FROM shared_activities"
        f" WHERE workspace_id = $1 AND bucket = ANY(ARRAY(SELECT i >> {BUCKET_BITS} FROM unnest($3::bigint[]) i))"
        " AND user_ids && $3::bigint[]", workspace_id, survivor, others)
    await conn.execute("DELETE FROM users WHERE workspace_id = $1 AND id = ANY($2::bigint[])", workspace_id, others)
    await orphans.forget(workspace_id, "user", others, conn)
    return survivor
