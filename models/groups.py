"""Groups (audiences) and their members."""
from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import GroupSource
from models.errors import DomainError


class Group(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    name = fields.CharField(max_length=200)
    description = fields.TextField(null=True)
    labels = fields.JSONField(default=list, db_default="[]")
    source = fields.CharEnumField(GroupSource, max_length=16, default=GroupSource.MANUAL,
                                  db_default=GroupSource.MANUAL.value)
    created_by = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "groups"
        unique_together = (("workspace", "name"),)


def clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise DomainError("NAME_REQUIRED", "a group needs a name", ["name"])
    if len(name) > 200:
        raise DomainError("NAME_TOO_LONG", "a group name is at most 200 characters", ["name"])
    return name


def clean_labels(labels: list[str]) -> str:
    return orjson.dumps(sorted({label.strip() for label in labels if label.strip()})).decode()


async def create_group(workspace_id: int, name: str, description: str | None, labels: list[str], *,
                       actor: str, conn: Any, source: GroupSource = GroupSource.MANUAL,
                       field: list[str] | None = None) -> Any:
    """Insert a group; NAME_TAKEN when the workspace has one of that name."""
    name = clean_name(name)
    try:
        return await conn.fetchrow(
            "INSERT INTO groups (workspace_id, name, description, labels, source, created_by)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING *",
            workspace_id, name, description, clean_labels(labels), source.value, actor)
    except asyncpg.UniqueViolationError:
        raise DomainError("NAME_TAKEN", f"a group named '{name}' exists", field or ["name"]) from None
