"""The request context: who calls (from the bearer API key) and the request's loaders."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError

from models.errors import DomainError
from models.permissions import Principal
from resolvers.loaders import Loaders


class Forbidden(GraphQLError):
    def __init__(self, permission: str) -> None:
        super().__init__(f"Access denied: this API key lacks '{permission}'",
                         extensions={"code": "ACCESS_DENIED"})


@dataclass
class Context:
    principal: Principal
    request: Any = None
    response: Any = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.principal.workspace_id)

    @property
    def workspace_id(self) -> int:
        return self.principal.workspace_id

    def require(self, permission: str) -> Principal:
        if not self.principal.can(permission):
            raise Forbidden(permission)
        return self.principal


class BadRequest(GraphQLError):
    """A query argument that cannot be served (queries have no userErrors)."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.message, extensions={"code": error.code, "field": error.field})
