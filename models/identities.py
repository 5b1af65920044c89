"""Identities (phone, email, WhatsApp, Instagram, external IDs) and their normalisation."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import Encryption, IdentityType
from models.phones import fast_e164

PHONE_LIKE = {IdentityType.PHONE, IdentityType.WHATSAPP}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INSTAGRAM = re.compile(r"^[a-z0-9._]{1,30}$")
_HEX_LENGTH = {Encryption.MD5: 32, Encryption.SHA256: 64}


class Identity(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE,
                                       db_constraint=False)  # hot child table
    workspace_id: int
    # No database FK (migration 0006): see models.orphans for what keeps identities tied to live users.
    user = fields.ForeignKeyField("models.User", related_name="identities", on_delete=fields.CASCADE,
                                  db_constraint=False)
    user_id: int
    type = fields.CharEnumField(IdentityType, max_length=16)
    channel = fields.CharField(max_length=64, default="", db_default="")  # EXTERNAL_ID's source channel
    value = fields.CharField(max_length=320)
    encryption = fields.CharEnumField(Encryption, max_length=8, default=Encryption.NONE,
                                      db_default=Encryption.NONE.value)
    source = fields.CharField(max_length=200, null=True)  # table/channel it came from
    first_seen_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)
    last_seen_at = fields.DatetimeField(db_default=Now(), auto_now=True)

    class Meta:
        table = "identities"
        unique_together = (("workspace", "type", "channel", "value"),)
        # (user_id, workspace_id), not the reverse: the lookup by key (workspace_id, type, channel, value) then has
        # one index that fits; with (workspace_id, user_id) a planner misled by stale or skewed statistics took
        # that one and scanned the workspace for every key (an import of 12k rows: 19 s instead of 2).
        indexes = (("user_id", "workspace_id"),)


class InvalidIdentity(ValueError):
    """A value that cannot be an identity of its type; `code` is the userErrors code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class IdentityKey:
    """A normalised identity: what the unique key (workspace, type, channel, value) is made of."""

    type: IdentityType
    value: str
    channel: str = ""
    encryption: Encryption = Encryption.NONE


def normalize(type_: IdentityType, raw: str, *, region: str | None = None, channel: str = "",
              encryption: Encryption = Encryption.NONE) -> IdentityKey:
    """Normalise a raw value or raise InvalidIdentity (codes INVALID_PHONE, INVALID_EMAIL, ...)."""
    value = normalize_value(type_, raw, region=region, encryption=encryption)
    if encryption in _HEX_LENGTH:  # a hashed identifier keeps its channel as given
        return IdentityKey(type_, value, channel, encryption)
    return IdentityKey(type_, value, channel.strip() if type_ is IdentityType.EXTERNAL_ID else "", encryption)


def normalize_value(type_: IdentityType, raw: str, *, region: str | None = None,
                    encryption: Encryption = Encryption.NONE) -> str:
    """The normalised value alone (the import builds its keys as plain tuples from it)."""
    value = (raw or "").strip()
    if encryption in _HEX_LENGTH:  # an identifier that arrived hashed is matched as-is
        value = value.lower()
        if not re.fullmatch(rf"[0-9a-f]{{{_HEX_LENGTH[encryption]}}}", value):
            raise InvalidIdentity("INVALID_HASH", f"not a {encryption.value} hex digest")
        return value
    if encryption is Encryption.AES:
        raise InvalidIdentity("INVALID_ENCRYPTION", "AES is only used for exports")
    if type_ in PHONE_LIKE:
        return normalize_phone(value, region)
    if type_ is IdentityType.EMAIL:
        value = value.lower()
        if len(value) > 320 or not _EMAIL.match(value):
            raise InvalidIdentity("INVALID_EMAIL", f"'{raw}' is not a valid email address")
    elif type_ is IdentityType.INSTAGRAM:
        value = value.removeprefix("@").lower()
        if not _INSTAGRAM.match(value):
            raise InvalidIdentity("INVALID_INSTAGRAM", f"'{raw}' is not a valid Instagram handle")
    elif not value or len(value) > 320:
        raise InvalidIdentity("INVALID_IDENTITY", "an external ID must be 1 to 320 characters")
    return value


@lru_cache(maxsize=65536)
def normalize_phone(raw: str, region: str | None) -> str:
    """E.164 for a phone written nationally (with region) or internationally."""
    fast = fast_e164(raw, region)
    if fast is not None:
        return fast
    try:
        number = phonenumbers.parse(raw, (region or "").upper() or None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity("INVALID_PHONE", f"'{raw}' is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity("INVALID_PHONE", f"'{raw}' is not a valid phone number"
                              + (f" for region {region}" if region else ""))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(type_: str, value: str, encryption: str = "NONE") -> str:
    """What a caller without pii:read sees: `+86 130****1111`, `j***@example.com`."""
    if encryption != Encryption.NONE.value:
        return value[:4] + "****"
    if type_ in (IdentityType.PHONE.value, IdentityType.WHATSAPP.value):
        try:
            number = phonenumbers.parse(value, None)
            national = str(number.national_number)
            return f"+{number.country_code} {national[:3]}{'*' * max(len(national) - 7, 1)}{national[-4:]}"
        except phonenumbers.NumberParseException:
            return "****"
    if type_ == IdentityType.EMAIL.value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return value[:2] + "****" if len(value) > 2 else "****"
