"""Set-based group membership changes over a selection of users (one statement per step).

Each takes `selected`, a `SELECT u.id FROM users u WHERE ...` over the builder's arguments, and
records what changed on the users' timelines (GROUP_CHANGE) in the same statement: one shared entry
per group, direction and bucket of neighbouring user ids (models.timeline), not a row per user.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models import db
from models.filters import SqlBuilder
from models.timeline import shared_record_sql

_PAYLOAD = ("jsonb_build_object("
            "'added', CASE WHEN what = 'added' THEN jsonb_build_array(group_id) ELSE '[]'::jsonb END,"
            " 'removed', CASE WHEN what = 'removed' THEN jsonb_build_array(group_id) ELSE '[]'::jsonb END)")


def _record(actor: str, distinct_users: bool = True) -> str:
    """The tail of a statement with a CTE `changes(user_id, group_id, what)`: timeline entries and counts.

    Without `distinct_users` every change is known to be another user's (one group, one direction)."""
    users = "(SELECT count(*) FROM (SELECT DISTINCT user_id FROM changes) d)" if distinct_users else \
        "(SELECT COALESCE(sum(n), 0) FROM recorded)"
    return f""", recorded AS ({shared_record_sql("changes", "GROUP_CHANGE", "group_id, what", _PAYLOAD, actor)})
SELECT (SELECT COALESCE(sum(n), 0) FROM recorded WHERE payload->'added' <> '[]') AS added,
       (SELECT COALESCE(sum(n), 0) FROM recorded WHERE payload->'removed' <> '[]') AS removed,
       {users} AS users"""


@dataclass
class MembershipChange:
    added: int = 0
    removed: int = 0
    users: int = 0  # users whose groups changed
    refused_user_ids: list[int] = field(default_factory=list)
    refused: int = 0


async def serialise_batches(workspace_id: int, conn: Any) -> None:
    """Batch membership changes of a workspace run one at a time: an anti-join must not read a membership
    another batch is removing (an uncommitted REPLACE or move would make an APPEND skip the user, and the
    membership would be lost). Each takes seconds at most, even at a million users."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('group_members:' || $1::bigint, 0))",
                       workspace_id)


async def _run(sql: str, b: SqlBuilder, conn: Any) -> MembershipChange:
    row = await db.fetchrow_skipping_existing(conn, sql, b.args,
                                              "ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING")
    assert row is not None
    return MembershipChange(added=row["added"], removed=row["removed"], users=row["users"])


async def join(b: SqlBuilder, selected: str, group_ids: list[int], conn: Any, *, actor: str,
               leave: str = "none", from_group_id: int | None = None) -> MembershipChange:
    """Selected users join `group_ids`; leave="others" drops their other groups, "from" only `from_group_id`."""
    await serialise_batches(b.args[0], conn)
    who = b.arg(actor)
    # One branch per group: each anti-join then sees one group's members (an index range), and the users
    # keep their scan order, so the inserts append to the indexes instead of landing at random.
    new_members = " UNION ALL ".join(
        f"SELECT {g}::bigint AS group_id, s.id AS user_id FROM selected s WHERE NOT EXISTS (SELECT 1 FROM"
        f" group_members o WHERE o.workspace_id = $1 AND o.group_id = {g}::bigint AND o.user_id = s.id)"
        for g in (b.arg(group_id) for group_id in group_ids))
    removal, groups = "", b.arg(group_ids) if leave != "none" else ""
    if leave == "others":
        removal = f"AND NOT gm.group_id = ANY({groups}::bigint[])"
    elif leave == "from":
        removal = f"AND gm.group_id = {b.arg(from_group_id)} AND NOT {b.arg(from_group_id)} = ANY({groups}::bigint[])"
    delete = f"""removed AS (
  DELETE FROM group_members gm USING selected s
  WHERE gm.workspace_id = $1 AND gm.user_id = s.id {removal} RETURNING gm.user_id, gm.group_id),""" \
        if leave != "none" else "removed AS (SELECT NULL::bigint AS user_id, NULL::bigint AS group_id WHERE false),"
    sql = f"""WITH selected AS ({selected}), {delete}
added AS (
  INSERT INTO group_members (workspace_id, group_id, user_id, source)
  SELECT $1, group_id, user_id, 'MANUAL' FROM ({new_members}) n {db.ON_CONFLICT} RETURNING user_id, group_id),
changes AS (SELECT user_id, group_id, 'added' AS what FROM added
            UNION ALL SELECT user_id, group_id, 'removed' FROM removed)""" + _record(who, distinct_users=(
        leave != "none" or len(group_ids) > 1))
    return await _run(sql, b, conn)


async def leave(b: SqlBuilder, selected: str, group_id: int, conn: Any, *, actor: str) -> MembershipChange:
    """Selected users leave one group, except those for whom it is the last: they are refused."""
    await serialise_batches(b.args[0], conn)
    group, who = b.arg(group_id), b.arg(actor)
    sql = f"""WITH selected AS ({selected}),
last_group AS (
  SELECT gm.user_id FROM group_members gm JOIN selected s ON s.id = gm.user_id
  WHERE gm.workspace_id = $1 AND gm.group_id = {group} AND NOT EXISTS (
    SELECT 1 FROM group_members o WHERE o.workspace_id = $1 AND o.user_id = gm.user_id AND o.group_id <> {group}
      AND EXISTS (SELECT 1 FROM groups g WHERE g.workspace_id = $1 AND g.id = o.group_id))),
removed AS (
  DELETE FROM group_members gm USING selected s
  WHERE gm.workspace_id = $1 AND gm.group_id = {group} AND gm.user_id = s.id
    AND gm.user_id NOT IN (SELECT user_id FROM last_group) RETURNING gm.user_id, gm.group_id),
changes AS (SELECT user_id, group_id, 'removed' AS what FROM removed)""" + _record(who) + """,
  (SELECT count(*) FROM last_group) AS refused,
  (SELECT array_agg(user_id ORDER BY user_id) FROM (SELECT user_id FROM last_group ORDER BY user_id LIMIT 100) r)
    AS refused_ids"""
    row = await conn.fetchrow(sql, *b.args)
    return MembershipChange(removed=row["removed"], users=row["users"], refused=row["refused"],
                            refused_user_ids=list(row["refused_ids"] or []))
