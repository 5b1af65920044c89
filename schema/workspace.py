"""The caller (viewer) and the workspace's settings."""
from __future__ import annotations

import strawberry

from schema.common import Node
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
