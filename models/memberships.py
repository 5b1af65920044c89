"""Set-based group membership changes over a selection of users (one statement per step).

Each takes `selected`, a `SELECT u.id FROM users u WHERE ...` over the builder's arguments, and
records what changed on the users' timelines (GROUP_CHANGE) in the same statement.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.filters import SqlBuilder

# Appends one GROUP_CHANGE activity per changed user, from a CTE `changes(user_id, group_id, what)`.
_RECORD = """, recorded AS (
  INSERT INTO activities (workspace_id, user_id, kind, payload, actor)
  SELECT $1, user_id, 'GROUP_CHANGE', jsonb_build_object(
      'added', COALESCE(jsonb_agg(group_id) FILTER (WHERE what = 'added'), '[]'::jsonb),
      'removed', COALESCE(jsonb_agg(group_id) FILTER (WHERE what = 'removed'), '[]'::jsonb)), {actor}
  FROM changes GROUP BY user_id RETURNING 1)
SELECT (SELECT count(*) FROM changes WHERE what = 'added') AS added,
       (SELECT count(*) FROM changes WHERE what = 'removed') AS removed,
       (SELECT count(*) FROM recorded) AS users"""


@dataclass
class MembershipChange:
    added: int = 0
    removed: int = 0
    users: int = 0  # users whose groups changed
    refused_user_ids: list[int] = field(default_factory=list)
    refused: int = 0


async def _run(sql: str, b: SqlBuilder, conn: Any) -> MembershipChange:
    row = await conn.fetchrow(sql, *b.args)
    return MembershipChange(added=row["added"], removed=row["removed"], users=row["users"])


async def join(b: SqlBuilder, selected: str, group_ids: list[int], conn: Any, *, actor: str,
               leave: str = "none", from_group_id: int | None = None) -> MembershipChange:
    """Selected users join `group_ids`; leave="others" drops their other groups, "from" only `from_group_id`."""
    groups, who = b.arg(group_ids), b.arg(actor)
    removal = ""
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
  SELECT $1, g, s.id, 'MANUAL' FROM selected s CROSS JOIN unnest({groups}::bigint[]) g
  ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING RETURNING user_id, group_id),
changes AS (SELECT user_id, group_id, 'added' AS what FROM added
            UNION ALL SELECT user_id, group_id, 'removed' FROM removed)""" + _RECORD.format(actor=who)
    return await _run(sql, b, conn)


async def leave(b: SqlBuilder, selected: str, group_id: int, conn: Any, *, actor: str) -> MembershipChange:
    """Selected users leave one group, except those for whom it is the last: they are refused."""
    group, who = b.arg(group_id), b.arg(actor)
    sql = f"""WITH selected AS ({selected}),
last_group AS (
  SELECT gm.user_id FROM group_members gm JOIN selected s ON s.id = gm.user_id
  WHERE gm.workspace_id = $1 AND gm.group_id = {group} AND NOT EXISTS (
    SELECT 1 FROM group_members o WHERE o.workspace_id = $1 AND o.user_id = gm.user_id AND o.group_id <> {group})),
removed AS (
  DELETE FROM group_members gm USING selected s
  WHERE gm.workspace_id = $1 AND gm.group_id = {group} AND gm.user_id = s.id
    AND gm.user_id NOT IN (SELECT user_id FROM last_group) RETURNING gm.user_id, gm.group_id),
changes AS (SELECT user_id, group_id, 'removed' AS what FROM removed)""" + _RECORD.format(actor=who) + """,
  (SELECT count(*) FROM last_group) AS refused,
  (SELECT array_agg(user_id ORDER BY user_id) FROM (SELECT user_id FROM last_group ORDER BY user_id LIMIT 100) r)
    AS refused_ids"""
    row = await conn.fetchrow(sql, *b.args)
    return MembershipChange(removed=row["removed"], users=row["users"], refused=row["refused"],
                            refused_user_ids=list(row["refused_ids"] or []))
