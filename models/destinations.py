"""Where audiences are pushed: a Kafka topic or an ad platform's Data Bank."""
from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import DestinationKind


class Destination(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    kind = fields.CharEnumField(DestinationKind, max_length=16)
    name = fields.CharField(max_length=200)
    config = fields.JSONField(default=dict)  # never holds secrets
    secrets = fields.JSONField(default=dict)  # never returned by queries
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "destinations"
        unique_together = (("workspace", "name"),)
