"""The user timeline: notes, tickets, messages, media and recorded changes."""
from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import ActivityKind


class Activity(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE,
                                       db_constraint=False)  # hot child table: user_id's FK suffices
    workspace_id: int
    user = fields.ForeignKeyField("models.User", related_name="activities", on_delete=fields.CASCADE)
    user_id: int
    kind = fields.CharEnumField(ActivityKind, max_length=16)
    payload = fields.JSONField(default=dict, db_default="{}")
    occurred_at = fields.DatetimeField(db_default=Now())
    actor = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "activities"
        indexes = (("workspace_id", "user_id", "occurred_at"),)
