"""The user timeline: `noteAdd`, `activityRecord` and `User.activities`."""
from __future__ import annotations

import datetime as dt

from strawberry.types import Info

from models import timeline
from models.enums import ActivityKind as ActivityKindEnum
from models.errors import DomainError
from resolvers.context import BadRequest, Context
from schema.activities import Activity, ActivityPayload, ActivityRecordInput, NoteAddInput
from schema.common import Connection, Edge, UserError, decode_cursor, encode_cursor, from_global_id, page, page_size
from schema.enums import ActivityKind


async def note_add(info: Info, input: NoteAddInput) -> ActivityPayload:
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        user_id = from_global_id(input.user_id, "User", ["userId"])[1]
        payload = timeline.checked_payload(ActivityKindEnum.NOTE, timeline.note_payload(input.body))
        return await _record(ctx, user_id, ActivityKindEnum.NOTE, payload, timeline.checked_occurred_at(None))
    except DomainError as exc:
        return ActivityPayload(user_errors=[UserError.of(exc)])


async def activity_record(info: Info, input: ActivityRecordInput) -> ActivityPayload:
    """Record what another system saw happen to a user (a message, media, a ticket, a note)."""
    ctx: Context = info.context
    ctx.require("users:write")
    try:
        user_id = from_global_id(input.user_id, "User", ["userId"])[1]
        kind = ActivityKindEnum(input.kind.value)
        payload = timeline.checked_payload(kind, input.payload)
        return await _record(ctx, user_id, kind, payload, timeline.checked_occurred_at(input.occurred_at))
    except DomainError as exc:
        return ActivityPayload(user_errors=[UserError.of(exc)])


async def _record(ctx: Context, user_id: int, kind: ActivityKindEnum, payload: str,
                  occurred_at: dt.datetime) -> ActivityPayload:
    row = await timeline.record(ctx.workspace_id, user_id, kind, payload, occurred_at, ctx.principal.actor)
    ctx.loaders.forget(ctx.loaders.user, user_id)  # its lastActivityAt may have moved
    return ActivityPayload(activity=Activity.from_row(row))


async def user_activities(ctx: Context, user_id: int, kinds: list[ActivityKind] | None, first: int | None,
                          after: str | None) -> Connection[Activity]:
    """One user's timeline, newest first, keyset-paged on (occurredAt, id)."""
    ctx.require("users:read")
    wanted = [ActivityKindEnum(k.value) for k in kinds] if kinds is not None else None
    if not ctx.principal.can_read_field("activities"):  # a PARTNER key needs "field:activities:read"
        wanted = []
    try:
        limit = page_size(first, default=20)
        position = _cursor(after) if after else None
    except DomainError as exc:
        raise BadRequest(exc) from None
    rows = await timeline.page(ctx.workspace_id, user_id, wanted, limit, position)
    edges = [Edge(cursor=encode_cursor([r["occurred_at"].isoformat(), r["id"]]), node=Activity.from_row(r))
             for r in rows[:limit]]

    async def count() -> int:
        return await timeline.count(ctx.workspace_id, user_id, wanted)

    return page(edges, has_more=len(rows) > limit, after=after, count=count)


def _cursor(after: str) -> tuple[dt.datetime, int]:
    value = decode_cursor(after)
    try:
        occurred_at, pk = value
        if not isinstance(occurred_at, str) or not isinstance(pk, int):
            raise ValueError
        return dt.datetime.fromisoformat(occurred_at), pk
    except ValueError:
        raise DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"]) from None
