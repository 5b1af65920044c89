"""`usersDelete` (seed 002): irreversible removal of users, off until an ADMIN enables it."""
from __future__ import annotations

import strawberry

from schema.common import UserError
from schema.users import UserSelector


@strawberry.input
class UsersDeleteInput:
    target: UserSelector


@strawberry.type
class UsersDeletePayload:
    deleted_count: int = 0
    deleted_user_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)
