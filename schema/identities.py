"""Identity: one way to reach a user (phone, email, WhatsApp, Instagram, external ID)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from models.identities import mask
from models.permissions import Principal
from schema.common import Node, UserError, to_global_id
from schema.enums import Encryption, IdentityType


@strawberry.type(description="An identifier of a user; `value` is masked without pii:read.")
class Identity(Node):
    type: IdentityType
    value: str
    masked: bool
    channel: str | None
    encryption: Encryption
    source: str | None = strawberry.field(description="The table or channel it came from.")
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any, principal: Principal) -> Identity:
        readable = principal.can_read_identity(row["type"])
        return cls(
            id=to_global_id("Identity", row["id"]), type=IdentityType(row["type"]),
            value=row["value"] if readable else mask(row["type"], row["value"], row["encryption"]),
            masked=not readable, channel=row["channel"] or None, encryption=Encryption(row["encryption"]),
            source=row["source"], first_seen_at=row["first_seen_at"], last_seen_at=row["last_seen_at"])


@strawberry.input(description="An identity to give a user. `region` helps parse national phone numbers.")
class IdentityInput:
    type: IdentityType
    value: str
    region: str | None = None
    channel: str | None = None
    encryption: Encryption = Encryption.NONE
    source: str | None = None


@strawberry.input
class IdentityAddInput:
    user_id: strawberry.ID
    identity: IdentityInput


@strawberry.input
class IdentityRemoveInput:
    id: strawberry.ID = strawberry.field(description="The Identity's ID.")


@strawberry.type
class IdentityAddPayload:
    identity: Identity | None = None
    user_id: strawberry.ID | None = strawberry.field(
        default=None, description="The user now holding it (the oldest one when users were merged).")
    merged_user_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class IdentityRemovePayload:
    removed_identity_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
