"""Workspaces (tenants), their settings, API keys and the audit log."""
from __future__ import annotations

import hashlib
import secrets

import orjson
from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models import db
from models.enums import Role
from models.permissions import Principal


class Workspace(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200)
    default_region = fields.CharField(max_length=2, default="US")
    account_deletion_enabled = fields.BooleanField(default=False)
    user_list_columns = fields.JSONField(default=list)  # tag keys shown in the user list
    export_key = fields.BinaryField(null=True)  # AES-GCM key for encrypted export columns
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "workspaces"


class ApiKey(Model):
    id = fields.BigIntField(primary_key=True)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="api_keys", on_delete=fields.CASCADE
    )
    workspace_id: int
    name = fields.CharField(max_length=200)
    secret_hash = fields.CharField(max_length=64)  # sha256 hex; the key itself is shown once
    role = fields.CharEnumField(Role, max_length=16)
    permissions = fields.JSONField(default=list)  # extra grants, e.g. "identity:PHONE:read"
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"
        unique_together = (("workspace", "secret_hash"),)


class AuditLog(Model):
    id = fields.BigIntField(primary_key=True)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name=False, on_delete=fields.CASCADE
    )
    workspace_id: int
    actor = fields.CharField(max_length=200)
    action = fields.CharField(max_length=100)
    target = fields.CharField(max_length=200, null=True)
    details = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "audit_log"
        indexes = (("workspace_id", "created_at"),)


async def create_workspace(name: str, default_region: str = "US") -> Workspace:
    return await Workspace.create(name=name, default_region=default_region, export_key=secrets.token_bytes(32))


async def create_api_key(workspace_id: int, name: str, role: Role, permissions: list[str] | None = None
                         ) -> tuple[ApiKey, str]:
    """Create a key; the returned token is shown once and only its hash is stored."""
    token = f"rk_{workspace_id}_{secrets.token_urlsafe(24)}"
    key = await ApiKey.create(workspace_id=workspace_id, name=name, role=role,
                              permissions=permissions or [], secret_hash=_hash(token))
    return key, token


async def authenticate(token: str) -> Principal | None:
    """The principal of a bearer token, or None when it is unknown, malformed or revoked."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "rk" or not parts[1].isdigit():
        return None
    row = await db.fetchrow(
        "SELECT id, name, role, permissions FROM api_keys"
        " WHERE workspace_id = $1 AND secret_hash = $2 AND revoked_at IS NULL",
        int(parts[1]), _hash(token))
    if row is None:
        return None
    extra = orjson.loads(row["permissions"]) if isinstance(row["permissions"], str) else row["permissions"]
    return Principal(workspace_id=int(parts[1]), key_id=row["id"], key_name=row["name"],
                     role=Role(row["role"]), extra=frozenset(extra or []))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def audit(principal: Principal, action: str, target: str | None = None, *, conn: object = None,
                **details: object) -> None:
    """Append to the audit log; pass `conn` to write inside the caller's transaction."""
    await db.execute(
        "INSERT INTO audit_log (workspace_id, actor, action, target, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
        principal.workspace_id, principal.actor, action, target, orjson.dumps(details, default=str).decode(),
        conn=conn)
