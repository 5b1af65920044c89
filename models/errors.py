"""Errors a caller caused; resolvers turn them into `userErrors { field message code }`."""
from __future__ import annotations


class DomainError(Exception):
    def __init__(self, code: str, message: str, field: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class NotFound(DomainError):
    def __init__(self, what: str, field: list[str] | None = None) -> None:
        super().__init__("NOT_FOUND", f"{what} not found", field)
