"""The user timeline (seed 003): notes, tickets, messages, media and the changes Roster recorded."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models import db
from schema.common import Node, UserError, to_global_id
from schema.enums import ActivityKind

if TYPE_CHECKING:
    from schema.users import User


@strawberry.type(description="One entry of a user's timeline.")
class Activity(Node):
    kind: ActivityKind
    occurred_at: dt.datetime
    payload: JSON = strawberry.field(description="What happened, as recorded (a note's `body`, a message, …).")
    actor: str | None = strawberry.field(description="Who recorded it (`apikey:<id>`); null when no caller did.")
    created_at: dt.datetime
    pk: strawberry.Private[int]
    user_pk: strawberry.Private[int | None]  # None: an entry shared by several users, fetched by id

    @classmethod
    def from_row(cls, row: Any) -> Activity:
        return cls(id=to_global_id("Activity", row["id"]), pk=row["id"], user_pk=row["user_id"],
                   kind=ActivityKind(row["kind"]), occurred_at=row["occurred_at"],
                   payload=db.json_value(row["payload"]), actor=row["actor"], created_at=row["created_at"])

    @strawberry.field(description="The user whose timeline this is; null for an entry a batch operation shared"
                                  " by several users when it is fetched by id rather than from a timeline.")
    async def user(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")] | None:
        from schema.users import User

        if self.user_pk is None:
            return None
        row = await info.context.loaders.user.load(self.user_pk)
        return User.from_row(row, info.context.principal) if row else None


@strawberry.input
class NoteAddInput:
    user_id: strawberry.ID
    body: str = strawberry.field(description="The note's text (at most 10,000 characters).")


@strawberry.input(description="An activity that happened in another system (a message, media, a ticket, a note).")
class ActivityRecordInput:
    user_id: strawberry.ID
    kind: ActivityKind = strawberry.field(
        description="MESSAGE, MEDIA, TICKET or NOTE; the other kinds are recorded by Roster itself.")
    occurred_at: dt.datetime | None = strawberry.field(
        default=None, description="When it happened (UTC without an offset); now when omitted. Not in the future.")
    payload: JSON | None = strawberry.field(default=None, description="A JSON object, kept as given.")


@strawberry.type
class ActivityPayload:
    activity: Activity | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
