"""Group (audience): a named set of users."""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from models import db
from schema.common import Node, UserError, to_global_id
from schema.enums import GroupSource
from schema.users import UserSelector


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


@strawberry.enum
class AssociationMethod(Enum):
    APPEND = "APPEND"  # join the groups, keep the others
    REPLACE = "REPLACE"  # be in exactly these groups


@strawberry.input
class GroupsAssociateInput:
    target: UserSelector
    group_ids: list[strawberry.ID]
    method: AssociationMethod = AssociationMethod.APPEND


@strawberry.input
class NewGroupInput:
    name: str
    description: str | None = None
    labels: list[str] = strawberry.field(default_factory=list)


@strawberry.input(description="Move users: leave their current groups (or only `fromGroupId`) and join others.")
class GroupsChangeInput:
    target: UserSelector
    to_group_ids: list[strawberry.ID] | None = None
    new_group: NewGroupInput | None = strawberry.field(default=None, description="Create a group and move there.")
    from_group_id: strawberry.ID | None = None


@strawberry.input
class GroupsRemoveUsersInput:
    group_id: strawberry.ID
    target: UserSelector


@strawberry.type(description="What a batch membership change did.")
class GroupsMembershipPayload:
    group: Group | None = strawberry.field(default=None, description="The group created by groupsChange(newGroup).")
    users_affected: int = strawberry.field(default=0, description="Users whose groups changed.")
    memberships_added: int = 0
    memberships_removed: int = 0
    refused_user_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="Users left in place because it is their last group (first 100).")
    user_errors: list[UserError] = strawberry.field(default_factory=list)
