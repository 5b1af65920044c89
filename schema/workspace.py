"""The caller (viewer) and the workspace's settings."""
from __future__ import annotations

from typing import Any

import strawberry

from models import db
from schema.common import Node, UserError
from schema.enums import Role


@strawberry.type
class Workspace(Node):
    name: str


@strawberry.type(description="Who is calling: an API key of one workspace.")
class Viewer:
    workspace: Workspace
    api_key_name: str
    role: Role
    permissions: list[str]


@strawberry.type
class WorkspaceSettings:
    default_region: str = strawberry.field(description="Region used to parse national phone numbers.")
    account_deletion_enabled: bool
    user_list_columns: list[str] = strawberry.field(description="Tag keys shown as columns in the user list.")

    @classmethod
    def from_row(cls, row: Any) -> WorkspaceSettings:
        return cls(default_region=row["default_region"], account_deletion_enabled=row["account_deletion_enabled"],
                   user_list_columns=db.json_value(row["user_list_columns"]))


@strawberry.input(description="The settings to change; those left out keep their value.")
class WorkspaceSettingsUpdateInput:
    account_deletion_enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Allow `usersDelete` (irreversible); off by default.")
    user_list_columns: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description="Tag keys to show as user-list columns, in order (at most 20).")
    default_region: str | None = strawberry.field(
        default=strawberry.UNSET, description="ISO region (e.g. CN) used to parse national phone numbers.")


@strawberry.type
class WorkspaceSettingsPayload:
    workspace_settings: WorkspaceSettings | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
