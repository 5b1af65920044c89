"""Roles as named permission sets, and the principal a request acts as."""
from __future__ import annotations

from dataclasses import dataclass, field

from models.enums import Role

# "destinations:read" shows destinations without their secrets; creating or deleting one needs
# "destinations:write" (ADMIN only: it decides where the workspace's data may go).
READ = {"users:read", "groups:read", "tags:read", "jobs:read", "settings:read", "destinations:read"}
WRITE = {"users:write", "groups:write", "tags:write", "imports:write", "users:export", "pushes:write"}

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    # ADMIN holds "*" (everything), checked in Principal.can.
    Role.ADMIN: frozenset({"*"}),
    Role.OPERATOR: frozenset(READ | WRITE | {"pii:read"}),
    Role.ANALYST: frozenset(READ),
    # PARTNER reads users; which profile fields, identity types and tags is granted per key:
    # "field:<name>:read", "identity:<TYPE>:read", "tag:<key>:read".
    Role.PARTNER: frozenset({"users:read", "groups:read"}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key of one workspace with a role and extra grants."""

    workspace_id: int
    key_id: int
    key_name: str
    role: Role
    extra: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        return f"apikey:{self.key_id}"

    def can(self, permission: str) -> bool:
        granted = ROLE_PERMISSIONS[self.role] | self.extra
        return "*" in granted or permission in granted

    @property
    def permissions(self) -> list[str]:
        return sorted(ROLE_PERMISSIONS[self.role] | self.extra)

    def can_read_identity(self, identity_type: str) -> bool:
        return self.can("pii:read") or self.can(f"identity:{identity_type}:read")

    def can_read_tag(self, key: str) -> bool:
        return self.role is not Role.PARTNER or self.can(f"tag:{key}:read") or self.can("tag:*:read")

    def can_read_field(self, name: str) -> bool:
        return self.role is not Role.PARTNER or self.can(f"field:{name}:read") or self.can("field:*:read")
