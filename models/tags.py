"""Typed tags (custom fields) grouped in tag groups.

Values per user live in `user_tags`, written and read with raw SQL only (see migrations/0005).
"""
from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import TagType


class TagGroup(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    name = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "tag_groups"
        unique_together = (("workspace", "name"),)


class Tag(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    key = fields.CharField(max_length=100)
    name = fields.CharField(max_length=200)
    type = fields.CharEnumField(TagType, max_length=16)
    allowed_values = fields.JSONField(default=list, db_default="[]")
    tag_group = fields.ForeignKeyField("models.TagGroup", related_name="tags", null=True,
                                       on_delete=fields.SET_NULL)
    tag_group_id: int | None
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "tags"
        unique_together = (("workspace", "key"),)
