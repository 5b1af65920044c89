"""Groups (audiences) and their members."""
from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import GroupSource


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


class GroupMember(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    group = fields.ForeignKeyField("models.Group", related_name="members", on_delete=fields.CASCADE)
    group_id: int
    user = fields.ForeignKeyField("models.User", related_name="memberships", on_delete=fields.CASCADE)
    user_id: int
    source = fields.CharEnumField(GroupSource, max_length=16, default=GroupSource.MANUAL,
                                  db_default=GroupSource.MANUAL.value)
    added_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "group_members"
        unique_together = (("workspace", "group", "user"),)
        indexes = (("workspace_id", "user_id"),)
