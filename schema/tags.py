"""Tags (typed custom fields of users) and the tag groups that organise them."""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from models import db
from schema.common import Node, UserError, to_global_id
from schema.enums import TagType
from schema.users import UserSelector


@strawberry.type(description="A typed custom field of users, addressed by its `key`.")
class Tag(Node):
    key: str
    name: str
    type: TagType
    allowed_values: list[str]
    created_at: dt.datetime
    tag_group_pk: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: Any) -> Tag:
        return cls(id=to_global_id("Tag", row["id"]), key=row["key"], name=row["name"], type=TagType(row["type"]),
                   allowed_values=db.json_value(row["allowed_values"]), created_at=row["created_at"],
                   tag_group_pk=row["tag_group_id"])

    @strawberry.field
    async def tag_group(self, info: Info) -> TagGroup | None:
        if self.tag_group_pk is None:
            return None
        row = await info.context.loaders.tag_group.load(self.tag_group_pk)
        return TagGroup.from_row(row) if row else None


@strawberry.type(description="A named folder of tags.")
class TagGroup(Node):
    name: str
    created_at: dt.datetime
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> TagGroup:
        return cls(id=to_global_id("TagGroup", row["id"]), pk=row["id"], name=row["name"],
                   created_at=row["created_at"])

    @strawberry.field
    async def tags(self, info: Info) -> list[Tag]:
        return [Tag.from_row(r) for r in await info.context.loaders.tags_by_group.load(self.pk)]


@strawberry.input
class TagGroupCreateInput:
    name: str


@strawberry.type
class TagGroupPayload:
    tag_group: TagGroup | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class TagCreateInput:
    key: str = strawberry.field(description="Stable identifier: lower-case letters, digits and _.")
    name: str
    type: TagType
    allowed_values: list[str] = strawberry.field(default_factory=list)
    tag_group_id: strawberry.ID | None = None


@strawberry.input
class TagUpdateInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    allowed_values: list[str] | None = strawberry.UNSET
    tag_group_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class TagDeleteInput:
    id: strawberry.ID


@strawberry.type
class TagPayload:
    tag: Tag | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TagDeletePayload:
    deleted_tag_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.enum
class ConflictPolicy(Enum):
    OVERWRITE = "OVERWRITE"  # a later import replaces the value
    KEEP_MANUAL = "KEEP_MANUAL"  # a later import keeps this value


@strawberry.input
class UsersTagInput:
    target: UserSelector
    key: str
    values: list[str]
    conflict_policy: ConflictPolicy = strawberry.field(
        default=ConflictPolicy.KEEP_MANUAL, description="What a later import does with this value.")


@strawberry.input
class UsersUntagInput:
    target: UserSelector
    key: str


@strawberry.type
class UsersTagPayload:
    users_affected: int = strawberry.field(default=0, description="Users whose value changed.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)
