"""The user timeline: recording activities (which moves `last_activity_at`) and reading it newest first."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from models import db
from models.enums import ActivityKind
from models.errors import DomainError, NotFound

# Written by Roster itself when it changes a user; callers may not forge them.
SYSTEM_KINDS = frozenset({ActivityKind.PROFILE_CHANGE, ActivityKind.TAG_CHANGE, ActivityKind.GROUP_CHANGE,
                          ActivityKind.IMPORT, ActivityKind.MERGE})
MAX_NOTE_LENGTH = 10_000
MAX_PAYLOAD_BYTES = 64 * 1024
# Other systems' clocks drift; an activity a little "in the future" is still believable.
CLOCK_SKEW = dt.timedelta(minutes=5)


def note_payload(body: str) -> dict[str, Any]:
    body = body.strip()
    if not body:
        raise DomainError("BODY_REQUIRED", "a note needs a body", ["body"])
    if len(body) > MAX_NOTE_LENGTH:
        raise DomainError("BODY_TOO_LONG", f"a note is at most {MAX_NOTE_LENGTH} characters", ["body"])
    return {"body": body}


def checked_occurred_at(occurred_at: dt.datetime | None, now: dt.datetime | None = None) -> dt.datetime:
    """When the activity happened (UTC when no offset is given); now when omitted, never the future."""
    now = now or dt.datetime.now(dt.UTC)
    if occurred_at is None:
        return now
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=dt.UTC)
    if occurred_at > now + CLOCK_SKEW:
        raise DomainError("INVALID_VALUE", "occurredAt is in the future", ["occurredAt"])
    return occurred_at


def checked_payload(kind: ActivityKind, payload: Any) -> str:
    """The payload as JSON text, for a kind callers may record."""
    if kind in SYSTEM_KINDS:
        raise DomainError("INVALID_KIND", f"{kind.value} activities are recorded by Roster itself", ["kind"])
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise DomainError("INVALID_VALUE", "payload must be a JSON object", ["payload"])
    text = orjson.dumps(payload).decode()
    if len(text) > MAX_PAYLOAD_BYTES:
        raise DomainError("PAYLOAD_TOO_LARGE", f"payload is at most {MAX_PAYLOAD_BYTES} bytes of JSON", ["payload"])
    return text


async def record(workspace_id: int, user_id: int, kind: ActivityKind, payload: str, occurred_at: dt.datetime,
                 actor: str | None, conn: Any = None) -> asyncpg.Record:
    """Append an activity and move the user's last activity forward (never back), in one statement."""
    row = await db.fetchrow(
        "WITH touched AS (UPDATE users SET last_activity_at = GREATEST(last_activity_at, $5)"
        "                 WHERE workspace_id = $1 AND id = $2 RETURNING id)"
        " INSERT INTO activities (workspace_id, user_id, kind, payload, occurred_at, actor)"
        " SELECT $1, id, $3, $4::jsonb, $5, $6 FROM touched RETURNING *",
        workspace_id, user_id, kind.value, payload, occurred_at, actor, conn=conn)
    if row is None:
        raise NotFound("user", ["userId"])
    return row


def _where(kinds: Sequence[ActivityKind] | None) -> tuple[str, list[Any]]:
    return "workspace_id = $1 AND ($3::text[] IS NULL OR kind = ANY($3::text[]))", \
        [None if kinds is None else [k.value for k in kinds]]


def _timeline(where: str, columns: str) -> str:
    """A user's own activities and the shared entries of batch operations that changed them ($2: user id)."""
    return (f"SELECT {columns} FROM activities WHERE {where} AND user_id = $2"
            f" UNION ALL SELECT {columns} FROM shared_activities WHERE {where}"
            f" AND bucket = $2::bigint >> {BUCKET_BITS} AND $2::bigint = ANY(user_ids)")


async def page(workspace_id: int, user_id: int, kinds: Sequence[ActivityKind] | None, limit: int,
               after: tuple[dt.datetime, int] | None) -> list[asyncpg.Record]:
    """Up to `limit + 1` activities, newest first, strictly after the keyset position `after`."""
    where, args = _where(kinds)
    if after is not None:
        where += " AND (occurred_at, id) < ($4::timestamptz, $5::bigint)"
        args += list(after)
    columns = "id, workspace_id, $2::bigint AS user_id, kind, payload, occurred_at, actor, created_at"
    return await db.fetch(f"{_timeline(where, columns)} ORDER BY occurred_at DESC, id DESC LIMIT {limit + 1}",
                          workspace_id, user_id, *args)


async def count(workspace_id: int, user_id: int, kinds: Sequence[ActivityKind] | None) -> int:
    where, args = _where(kinds)
    return await db.fetchval(f"SELECT count(*) FROM ({_timeline(where, '1')}) t", workspace_id, user_id, *args)


async def by_id(workspace_id: int, activity_id: int) -> asyncpg.Record | None:
    """One activity; a shared entry has user_id NULL unless it belongs to one user only."""
    return await db.fetchrow(
        "SELECT id, workspace_id, user_id, kind, payload, occurred_at, actor, created_at FROM activities"
        " WHERE workspace_id = $1 AND id = $2 UNION ALL"
        " SELECT id, workspace_id, CASE WHEN cardinality(user_ids) = 1 THEN user_ids[1] END, kind, payload,"
        " occurred_at, actor, created_at FROM shared_activities WHERE workspace_id = $1 AND id = $2",
        workspace_id, activity_id)


# Batch operations record one timeline entry per group of up to 2**BUCKET_BITS users with neighbouring ids
# (`shared_activities`) instead of a row per user: a million users cost ~1000 rows, not a million.
BUCKET_BITS = 10


def shared_record_sql(changes: str, kind: str, keys: str, payload: str, actor: str) -> str:
    """SQL inserting the shared entries for `changes` (a relation with user_id and the `keys` columns):
    one per bucket and distinct `keys`, whose `payload` is an expression over `keys`. It returns each
    entry's payload and number of users `n`, so callers count without another pass over `changes`."""
    return (f"INSERT INTO shared_activities (workspace_id, bucket, user_ids, kind, payload, actor)"
            f" SELECT $1, user_id >> {BUCKET_BITS}, array_agg(user_id), '{kind}', {payload}, {actor}"
            f" FROM {changes} GROUP BY {keys}, user_id >> {BUCKET_BITS}"
            f" RETURNING payload, cardinality(user_ids) AS n")
