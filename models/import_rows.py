"""One import row, parsed under a column mapping: profile values, identities, tags, groups, or a reason.

Pure Python (no IO) so it can run in worker processes; everything it needs travels in `RowSpec`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from models.enums import Channel, FriendVerification, Gender, IdentityType, MessageSettings
from models.errors import DomainError
from models.identities import IdentityKey, InvalidIdentity, normalize
from models.tag_values import validate

NAME_TARGETS = {"NAME": "display_name", "FIRST_NAME": "first_name", "LAST_NAME": "last_name",
                "USERNAME": "username"}
_ENUMS: dict[str, type] = {"gender": Gender, "friend_verification": FriendVerification,
                           "message_settings": MessageSettings, "primary_channel": Channel}
_GENDER_WORDS = {"m": "MALE", "male": "MALE", "男": "MALE", "f": "FEMALE", "female": "FEMALE", "女": "FEMALE"}
_TRUE, _FALSE = {"true", "1", "yes", "y", "是"}, {"false", "0", "no", "n", "否"}


@dataclass(frozen=True)
class ColumnRule:
    column: int
    target: str  # NAME | FIRST_NAME | LAST_NAME | USERNAME | PROFILE | IDENTITY | TAG | GROUP | REGION | IGNORE
    field: str | None = None  # PROFILE: the users column
    identity_type: str | None = None
    tag: dict[str, Any] | None = None  # IDENTITY: region in `region`; TAG: the tag definition (id, key, type, ...)
    region: str | None = None


@dataclass
class RowSpec:
    rules: list[ColumnRule]
    default_region: str
    source: str


@dataclass
class ParsedRow:
    index: int
    profile: dict[str, Any] = field(default_factory=dict)  # users columns incl. display_name/username
    identities: list[IdentityKey] = field(default_factory=list)
    tags: dict[int, list[str]] = field(default_factory=dict)  # tag id -> canonical values
    groups: list[str] = field(default_factory=list)  # group names from a GROUP column


@dataclass
class RowError:
    index: int
    code: str
    message: str


def parse_row(index: int, cells: list[str], spec: RowSpec) -> ParsedRow | RowError:
    """Parse one row; the first problem fails the whole row (it goes to the error report)."""
    row = ParsedRow(index)
    region = spec.default_region
    for rule in spec.rules:
        if rule.target == "REGION":
            value = _cell(cells, rule.column).upper()
            if value:
                region = value
    for rule in spec.rules:
        value = _cell(cells, rule.column)
        if not value or rule.target in ("IGNORE", "REGION"):
            continue
        try:
            if rule.target in NAME_TARGETS:
                row.profile[NAME_TARGETS[rule.target]] = checked_length(NAME_TARGETS[rule.target], value)
            elif rule.target == "PROFILE":
                row.profile[rule.field] = profile_value(rule.field, value)  # type: ignore[arg-type]
            elif rule.target == "IDENTITY":
                for part in _split(value) if rule.identity_type == "EMAIL" else [value]:
                    row.identities.append(normalize(IdentityType(rule.identity_type), part,
                                                    region=rule.region or region))
            elif rule.target == "TAG":
                assert rule.tag is not None
                values = _split(value) if rule.tag["type"] == "MULTI_VALUE" else [value]
                row.tags[rule.tag["id"]] = validate(rule.tag, values)
            elif rule.target == "GROUP":
                row.groups.extend(checked_length("group", name) for name in _split(value))
        except InvalidIdentity as exc:
            return RowError(index, exc.code, str(exc))
        except DomainError as exc:
            return RowError(index, exc.code, exc.message)
    if not row.identities:
        return RowError(index, "MISSING_IDENTIFIER", "the row has no phone, email or other identifier")
    row.identities = list(dict.fromkeys(row.identities))
    return row


def _cell(cells: list[str], column: int) -> str:
    return cells[column].strip() if column < len(cells) and cells[column] else ""


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.replace("；", ";").replace("，", ",").replace(";", ",").split(",") if p.strip()]


def profile_value(name: str, value: str) -> Any:
    """A profile cell as the users column expects it, or DomainError INVALID_VALUE."""
    def bad(what: str) -> DomainError:
        return DomainError("INVALID_VALUE", f"{name}: '{value}' is not {what}")

    if name == "birthday":
        try:
            return dt.date.fromisoformat(value.replace("/", "-")[:10])
        except ValueError:
            raise bad("a date (YYYY-MM-DD)") from None
    if name == "level":
        try:
            return int(float(value))
        except ValueError:
            raise bad("a whole number") from None
    if name == "friending_allowed":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise bad("true or false")
    if name in _ENUMS:
        word = _GENDER_WORDS.get(value.lower(), value.upper()) if name == "gender" else value.upper()
        if word not in _ENUMS[name].__members__:
            raise bad("one of " + ", ".join(_ENUMS[name].__members__))
        return word
    return checked_length(name, value)


def checked_length(name: str, value: str) -> str:
    limit = _MAX_LENGTH.get(name, 200)
    if len(value) > limit:
        raise DomainError("INVALID_VALUE", f"{name} is longer than {limit} characters")
    return value


_MAX_LENGTH = {"display_name": 200, "first_name": 100, "last_name": 100, "nickname": 100, "city": 100,
               "country": 100, "language": 35, "avatar_url": 1000, "status_message": 500, "member_level": 50,
               "role": 50, "username": 128, "group": 200}
