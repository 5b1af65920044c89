"""User (a contact or account), its tag values, and the inputs that select and change users."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from models import db
from models.permissions import Principal
from models.profile import PROFILE_FIELDS
from schema.activities import Activity
from schema.common import Connection, Node, UserError, to_global_id
from schema.enums import (AccountType, ActivityKind, Channel, DuplicatePolicy, FriendVerification, Gender,
                          MessageSettings, OrderDirection, TagFilterOp, TagSource, TagType, UserOrderField, UserSource)
from schema.enums import IdentityType
from schema.identities import Identity, IdentityInput

if TYPE_CHECKING:
    from schema.groups import Group

_ENUM_FIELDS = {"gender": Gender, "friend_verification": FriendVerification,
                "message_settings": MessageSettings, "primary_channel": Channel}


@strawberry.type(description="A user's value of one tag.")
class UserTagValue:
    key: str
    name: str
    type: TagType
    values: list[str]
    source: TagSource
    locked: bool = strawberry.field(description="Set by hand: imports keep it.")
    updated_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> UserTagValue:
        return cls(key=row["key"], name=row["name"], type=TagType(row["type"]), values=list(row["values"]),
                   source=TagSource(row["source"]), locked=row["locked"], updated_at=row["updated_at"])


@strawberry.type(description="A user profile: a contact reached through its identities, or an account.")
class User(Node):
    username: str | None
    account_type: AccountType
    display_name: str | None
    first_name: str | None
    last_name: str | None
    nickname: str | None
    gender: Gender | None
    birthday: dt.date | None
    city: str | None
    country: str | None
    language: str | None
    avatar_url: str | None
    status_message: str | None = strawberry.field(description='The "what\'s up" status.')
    member_level: str | None
    level: int | None
    role: str | None
    friend_verification: FriendVerification | None
    friending_allowed: bool | None
    message_settings: MessageSettings | None
    primary_channel: Channel | None
    source: UserSource
    initial_source: str | None = strawberry.field(description="The import or table the user first came from.")
    locked_fields: list[str] = strawberry.field(description="Fields edited by hand; imports leave them.")
    created_at: dt.datetime
    updated_at: dt.datetime
    last_activity_at: dt.datetime | None
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any, principal: Principal) -> User:
        values: dict[str, Any] = {}
        for name in PROFILE_FIELDS:
            value = row[name] if principal.can_read_field(name) else None
            enum = _ENUM_FIELDS.get(name)
            values[name] = enum(value) if enum and value is not None else value
        return cls(id=to_global_id("User", row["id"]), pk=row["id"], username=row["username"],
                   account_type=AccountType(row["account_type"]), source=UserSource(row["source"]),
                   initial_source=row["initial_source"], locked_fields=db.json_value(row["locked_fields"]),
                   created_at=row["created_at"], updated_at=row["updated_at"],
                   last_activity_at=row["last_activity_at"], **values)

    @strawberry.field(description="Age in whole years, derived from the birthday.")
    def age(self) -> int | None:
        if self.birthday is None:
            return None
        today = dt.date.today()
        return today.year - self.birthday.year - ((today.month, today.day) < (self.birthday.month, self.birthday.day))

    @strawberry.field
    async def identities(self, info: Info, types: list[IdentityType] | None = None
                         ) -> list[Identity]:
        ctx = info.context
        rows = await ctx.loaders.identities_by_user.load(self.pk)
        wanted = {t.value for t in types} if types else None
        return [Identity.from_row(r, ctx.principal) for r in rows
                if (wanted is None or r["type"] in wanted)
                and (ctx.principal.role.value != "PARTNER" or ctx.principal.can_read_identity(r["type"]))]

    @strawberry.field(description="The groups (audiences) the user belongs to.")
    async def groups(self, info: Info) -> list[Annotated[Group, strawberry.lazy("schema.groups")]]:
        from schema.groups import Group

        return [Group.from_row(r) for r in await info.context.loaders.groups_by_user.load(self.pk)]

    @strawberry.field(description="Tag values, all or those of `keys`.")
    async def tags(self, info: Info, keys: list[str] | None = None) -> list[UserTagValue]:
        principal = info.context.principal
        rows = await info.context.loaders.tag_values_by_user.load(self.pk)
        return [UserTagValue.from_row(r) for r in rows
                if (keys is None or r["key"] in keys) and principal.can_read_tag(r["key"])]

    @strawberry.field(description="The value of one tag, or null when the user has none.")
    async def tag(self, info: Info, key: str) -> UserTagValue | None:
        found = await self.tags(info, [key])
        return found[0] if found else None

    @strawberry.field(description="The user's values of the tags shown as user-list columns (workspace settings),"
                                  " in column order; columns the user has no value for are left out.")
    async def list_columns(self, info: Info) -> list[UserTagValue]:
        from resolvers.workspace import user_list_column_keys

        columns = await user_list_column_keys(info.context)
        values = await self.tags(info, columns) if columns else []
        by_key = {v.key: v for v in values}
        return [by_key[key] for key in columns if key in by_key]

    @strawberry.field(description="The user's timeline, newest first: notes, tickets, messages, media and the"
                                  " changes Roster recorded.")
    async def activities(self, info: Info, kinds: list[ActivityKind] | None = None, first: int | None = None,
                         after: str | None = None) -> Connection[Activity]:
        from resolvers.activities import user_activities

        return await user_activities(info.context, self.pk, kinds, first, after)


@strawberry.input
class TagFilter:
    key: str
    op: TagFilterOp
    values: list[str] | None = None


@strawberry.input(description="Which users: all conditions must hold.")
class UserFilter:
    ids: list[strawberry.ID] | None = None
    query: str | None = strawberry.field(default=None, description="Name or username (substring), phone or email.")
    group_ids: list[strawberry.ID] | None = strawberry.field(default=None, description="In any of these groups.")
    not_in_group_ids: list[strawberry.ID] | None = None
    member_levels: list[str] | None = None
    account_types: list[AccountType] | None = None
    sources: list[UserSource] | None = None
    tags: list[TagFilter] | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    last_activity_after: dt.datetime | None = None
    last_activity_before: dt.datetime | None = None


@strawberry.input
class UserOrder:
    field: UserOrderField = UserOrderField.ID
    direction: OrderDirection = OrderDirection.DESC


@strawberry.input
class TagValueInput:
    key: str
    values: list[str]


@strawberry.input(description="Profile fields; each is optional.")
class ProfileInput:
    display_name: str | None = strawberry.UNSET
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    nickname: str | None = strawberry.UNSET
    gender: Gender | None = strawberry.UNSET
    birthday: dt.date | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    language: str | None = strawberry.UNSET
    avatar_url: str | None = strawberry.UNSET
    status_message: str | None = strawberry.UNSET
    member_level: str | None = strawberry.UNSET
    level: int | None = strawberry.UNSET
    role: str | None = strawberry.UNSET
    friend_verification: FriendVerification | None = strawberry.UNSET
    friending_allowed: bool | None = strawberry.UNSET
    message_settings: MessageSettings | None = strawberry.UNSET
    primary_channel: Channel | None = strawberry.UNSET


@strawberry.input
class UserCreateInput(ProfileInput):
    username: str
    account_type: AccountType = AccountType.GENERAL
    identities: list[IdentityInput] = strawberry.field(default_factory=list)
    group_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    tags: list[TagValueInput] = strawberry.field(default_factory=list)


@strawberry.input
class UserUpdateInput(ProfileInput):
    id: strawberry.ID
    username: str | None = strawberry.field(default=strawberry.UNSET, description="Immutable: only for a clear error.")
    account_type: AccountType | None = strawberry.field(default=strawberry.UNSET, description="Immutable.")
    identities: list[IdentityInput] = strawberry.field(default_factory=list)
    tags: list[TagValueInput] = strawberry.field(default_factory=list)
    unlock_fields: list[str] = strawberry.field(
        default_factory=list, description="Release hand-edited fields so imports update them again.")


@strawberry.type
class UserPayload:
    user: User | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UsersMergeInput:
    user_ids: list[strawberry.ID]


@strawberry.type
class UsersMergePayload:
    user: User | None = None
    merged_user_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ContactInput:
    phone: str
    name: str | None = None
    region: str | None = strawberry.field(default=None, description="ISO country of a national number, e.g. CN.")


@strawberry.input
class ContactsUpsertInput:
    contacts: list[ContactInput]
    group_ids: list[strawberry.ID] = strawberry.field(description="At least one: a contact is always in a group.")
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.OVERWRITE


@strawberry.type
class ContactsUpsertPayload:
    users: list[User | None] = strawberry.field(default_factory=list, description="Per input row; null if it failed.")
    created: int = 0
    updated: int = 0
    skipped: int = 0
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(one_of=True, description="The users a batch operation applies to: exactly one of `ids` or `filter`.")
class UserSelector:
    ids: list[strawberry.ID] | None = strawberry.UNSET
    filter: UserFilter | None = strawberry.UNSET
