"""Identities, group memberships and tag values of deleted users, groups and tags.

`identities`, `group_members` and `user_tags` carry no foreign keys: checking one per row cost more
than half of a million-user batch operation or import (migrations 0005, 0006). Writers lock the parents
they add rows to (FOR KEY SHARE) unless they created them in the same transaction, so a deletion waits
for them; deleting a parent deletes its rows itself
(`forget`, in the deleting transaction) and leaves a tombstone. A writer that read the parent before
that deletion committed can still add a row afterwards; `sweep` (a worker cron, every minute) removes
those once no transaction that started before the tombstone was first seen is still running, so no
such writer can be left. Until then a stray row is never shown: every read starts from the user.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from models import db
from models.timeline import BUCKET_BITS

ParentKind = Literal["user", "group", "tag"]
_CHILDREN: dict[str, list[tuple[str, str]]] = {
    "user": [("identities", "user_id"), ("group_members", "user_id"), ("user_tags", "user_id")],
    "group": [("group_members", "group_id")],
    "tag": [("user_tags", "tag_id")],
}


async def forget(workspace_id: int, kind: ParentKind, ids: Sequence[int], conn: Any) -> None:
    """Delete the rows of parents deleted in this transaction, and leave their tombstones."""
    if not ids:
        return
    await _delete_children(workspace_id, kind, list(ids), conn)
    await conn.execute("INSERT INTO deleted_parents (workspace_id, kind, parent_id) SELECT $1, $2, unnest($3::bigint[])"
                       " ON CONFLICT DO NOTHING", workspace_id, kind, list(ids))


async def _delete_children(workspace_id: int, kind: str, ids: list[int], conn: Any) -> None:
    for table, column in _CHILDREN[kind]:
        await conn.execute(f"DELETE FROM {table} WHERE workspace_id = $1 AND {column} = ANY($2::bigint[])",
                           workspace_id, ids)
    if kind == "user":  # and from the timeline entries batch operations shared with others
        buckets = f"ARRAY(SELECT DISTINCT i >> {BUCKET_BITS} FROM unnest($2::bigint[]) i)"
        await conn.execute(
            f"UPDATE shared_activities s SET user_ids = ARRAY(SELECT x FROM unnest(s.user_ids) x"
            f" WHERE x <> ALL($2::bigint[]) ORDER BY x)"
            f" WHERE s.workspace_id = $1 AND s.bucket = ANY({buckets}) AND s.user_ids && $2::bigint[]",
            workspace_id, ids)
        await conn.execute(f"DELETE FROM shared_activities WHERE workspace_id = $1 AND bucket = ANY({buckets})"
                           f" AND cardinality(user_ids) = 0", workspace_id, ids)


_RELEASE = ("DELETE FROM identities i USING ({keys}) k(workspace_id, type, channel, value)"
            " WHERE i.workspace_id = k.workspace_id AND i.type = k.type AND i.channel = k.channel"
            " AND i.value = k.value AND NOT EXISTS (SELECT 1 FROM users u WHERE u.workspace_id = i.workspace_id"
            " AND u.id = i.user_id)")


async def release_stray_keys(workspace_id: int, keys: Sequence[tuple[str, str, str]], conn: Any) -> None:
    """Free (type, channel, value) keys held by a stray identity, one whose user is deleted but that the
    sweep has not removed yet: a writer about to give a key to a live user must not be blocked by it."""
    if keys:
        await conn.execute(_RELEASE.format(keys="SELECT $1::bigint, * FROM unnest($2::text[], $3::text[], $4::text[])"),
                           workspace_id, *(list(column) for column in zip(*keys)))


async def release_stray_identities(conn: Any, staging: str) -> None:
    """`release_stray_keys` for the keys of a staging table (workspace_id, type, channel, value, ...)."""
    await conn.execute(_RELEASE.format(keys=f"SELECT workspace_id, type, channel, value FROM {staging}"))


async def sweep() -> int:
    """Remove rows late writers added for deleted parents; returns how many tombstones were settled."""
    await db.execute("UPDATE deleted_parents SET seen_at = clock_timestamp() WHERE seen_at IS NULL")
    # Transactions of this database's clients that may have read a parent before its deletion committed.
    oldest = await db.fetchval(
        "SELECT COALESCE(min(xact_start), clock_timestamp()) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL")
    async with db.transaction() as conn:
        settled = await conn.fetch(
            "DELETE FROM deleted_parents WHERE seen_at < $1 RETURNING workspace_id, kind, parent_id", oldest)
        by_parent: dict[tuple[int, str], list[int]] = {}
        for row in settled:
            by_parent.setdefault((row["workspace_id"], row["kind"]), []).append(row["parent_id"])
        for (workspace_id, kind), ids in by_parent.items():
            await _delete_children(workspace_id, kind, ids, conn)
    return len(settled)
