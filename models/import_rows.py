"""One import row, parsed under a column mapping: profile values, identities, tags, groups, or a reason.

Pure Python (no IO) so it can run in worker processes; everything it needs travels in `RowSpec`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from models.enums import Channel, FriendVerification, Gender, IdentityType, MessageSettings
from models.errors import DomainError
from models.identities import InvalidIdentity, normalize_value
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


Key = tuple[str, str, str, str]  # an identity as (type, channel, value, encryption): its unique key, as plain strings

_MEMO_LIMIT = 50_000  # memoised cells per spec (tag and group cells repeat; free text must not grow memory)


@dataclass
class RowSpec:
    rules: list[ColumnRule]
    default_region: str
    source: str

    def __post_init__(self) -> None:
        # The rules resolved once, not on every cell: (column, target, argument) in the rules' order.
        self.region_columns = [r.column for r in self.rules if r.target == "REGION"]
        self.steps: list[tuple[int, str, Any]] = []
        for r in self.rules:
            if r.target in NAME_TARGETS:
                self.steps.append((r.column, "NAME", NAME_TARGETS[r.target]))
            elif r.target == "PROFILE":
                self.steps.append((r.column, "PROFILE", r.field))
            elif r.target == "IDENTITY":
                self.steps.append((r.column, "IDENTITY", (IdentityType(r.identity_type), r.region)))
            elif r.target in ("TAG", "GROUP"):
                self.steps.append((r.column, r.target, r.tag))
        # Canonical tag values and group lists by cell (they repeat a lot): value or (code, message).
        self.memo: dict[tuple[int, str], list[str] | tuple[str, str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "memo": {}}  # a worker process starts with an empty memo


class ParsedRow(NamedTuple):
    """A row that parsed. A tuple of plain values: cheap to send back from a parsing process."""

    index: int
    profile: dict[str, Any]  # users columns incl. display_name/username
    identities: list[Key]  # distinct, in the order of the cells
    tags: dict[int, list[str]]  # tag id -> canonical values
    groups: list[str]  # group names from a GROUP column


@dataclass
class RowError:
    index: int
    code: str
    message: str


def parse_row(index: int, cells: list[str], spec: RowSpec) -> ParsedRow | RowError:
    """Parse one row; the first problem fails the whole row (it goes to the error report)."""
    region = spec.default_region
    for column in spec.region_columns:
        value = _cell(cells, column).upper()
        if value:
            region = value
    profile: dict[str, Any] = {}
    identities: list[Key] = []
    tags: dict[int, list[str]] = {}
    groups: list[str] = []
    width = len(cells)
    try:
        for column, target, arg in spec.steps:
            value = cells[column] if column < width else ""
            if not value or not (value := value.strip()):
                continue
            if target == "IDENTITY":
                type_, fixed_region = arg
                for part in _split(value) if type_ is IdentityType.EMAIL else (value,):
                    identities.append((type_.value, "", normalize_value(type_, part, region=fixed_region or region),
                                       "NONE"))
            elif target == "NAME":
                profile[arg] = checked_length(arg, value)
            elif target == "PROFILE":
                profile[arg] = profile_value(arg, value)
            elif target == "TAG":
                tags[arg["id"]] = _memoised(spec, arg["id"], value, _tag_values, arg)
            else:  # GROUP
                groups.extend(_memoised(spec, -1, value, _group_names, None))
    except InvalidIdentity as exc:
        return RowError(index, exc.code, str(exc))
    except DomainError as exc:
        return RowError(index, exc.code, exc.message)
    if not identities:
        return RowError(index, "MISSING_IDENTIFIER", "the row has no phone, email or other identifier")
    if len(identities) > 1:
        identities = list(dict.fromkeys(identities))
    return ParsedRow(index, profile, identities, tags, groups)


def _tag_values(value: str, tag: dict[str, Any]) -> list[str]:
    return validate(tag, _split(value) if tag["type"] == "MULTI_VALUE" else [value])


def _group_names(value: str, _: None) -> list[str]:
    return [checked_length("group", name) for name in _split(value)]


def _memoised(spec: RowSpec, slot: int, value: str, parse: Callable[[str, Any], list[str]], arg: Any) -> list[str]:
    """`parse(value, arg)` remembered per spec; a DomainError is remembered as (code, message)."""
    known = spec.memo.get((slot, value))
    if known is None:
        try:
            known = parse(value, arg)
        except DomainError as exc:
            known = (exc.code, exc.message)
        if len(spec.memo) >= _MEMO_LIMIT:
            spec.memo.clear()
        spec.memo[(slot, value)] = known
    if isinstance(known, tuple):
        raise DomainError(*known)
    return known


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
