"""Relay plumbing (Node, global IDs, keyset connections) and the userErrors shape."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import orjson
import strawberry

from models.errors import DomainError

T = TypeVar("T")


def to_global_id(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("="))


def from_global_id(global_id: str, expected: str | None = None, field: list[str] | None = None) -> tuple[str, int]:
    """(type name, primary key) of an opaque ID; DomainError INVALID_ID when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        type_name, _, pk = raw.partition(":")
        value = int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise DomainError("INVALID_ID", f"'{global_id}' is not a valid ID", field) from None
    if expected is not None and type_name != expected:
        raise DomainError("INVALID_ID", f"'{global_id}' is not a {expected} ID", field)
    return type_name, value


def pks(global_ids: list[strawberry.ID] | None, expected: str, field: list[str]) -> list[int] | None:
    if global_ids is None:
        return None
    return [from_global_id(g, expected, field)[1] for g in global_ids]


@strawberry.interface(description="An object with an opaque, globally unique ID.")
class Node:
    id: strawberry.ID


@strawberry.type(description="A problem with the input of a mutation.")
class UserError:
    field: list[str] | None
    message: str
    code: str

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(field=error.field, message=error.message, code=error.code)


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A page of a list, with keyset pagination (`first` / `after`).")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _count: strawberry.Private[object]

    @strawberry.field(description="How many items match, regardless of paging (computed on request).")
    async def total_count(self) -> int:
        return await self._count()  # type: ignore[operator]

    @strawberry.field
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]


def page(edges: list[Edge[T]], *, has_more: bool, after: str | None,
         count: Callable[[], Awaitable[int]]) -> Connection[T]:
    """A keyset page: `has_more` when the query found a row past the page (it fetches limit + 1)."""
    return Connection(edges=edges, _count=count, page_info=PageInfo(
        has_next_page=has_more, has_previous_page=after is not None,
        start_cursor=edges[0].cursor if edges else None, end_cursor=edges[-1].cursor if edges else None))


def encode_cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[object]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"]) from None
    if not isinstance(value, list):
        raise DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"])
    return value


def camel(name: str) -> str:
    """GraphQL's name of a Python/SQL field: member_level -> memberLevel."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def snake(name: str) -> str:
    """The Python/SQL name of a GraphQL field: memberLevel -> member_level (snake names pass through)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


MAX_PAGE = 250


def page_size(first: int | None, default: int = 50) -> int:
    if first is None:
        return default
    if first < 1 or first > MAX_PAGE:
        raise DomainError("INVALID_PAGE_SIZE", f"first must be between 1 and {MAX_PAGE}", ["first"])
    return first
