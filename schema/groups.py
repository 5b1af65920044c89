"""Group (audience): a named set of users."""
from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.types import Info

from models import db
from schema.common import Node, UserError, to_global_id
from schema.enums import GroupSource


@strawberry.type(description="A group of users (an audience).")
class Group(Node):
    name: str
    description: str | None
    labels: list[str]
    source: GroupSource
    created_by: str | None
    created_at: dt.datetime
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Group:
        return cls(id=to_global_id("Group", row["id"]), pk=row["id"], name=row["name"],
                   description=row["description"], labels=db.json_value(row["labels"]),
                   source=GroupSource(row["source"]), created_by=row["created_by"], created_at=row["created_at"])

    @strawberry.field
    async def member_count(self, info: Info) -> int:
        return await info.context.loaders.member_count.load(self.pk)


@strawberry.input
class GroupCreateInput:
    name: str
    description: str | None = None
    labels: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class GroupUpdateInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    labels: list[str] | None = strawberry.UNSET


@strawberry.input
class GroupDeleteInput:
    id: strawberry.ID


@strawberry.type
class GroupPayload:
    group: Group | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class GroupDeletePayload:
    deleted_group_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
