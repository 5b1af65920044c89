"""Typed tags (custom fields) grouped in tag groups, and their values per user."""
from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import TagSource, TagType


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


class UserTag(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE,
                                       db_constraint=False)  # hot child table: user_id's FK suffices
    workspace_id: int
    user = fields.ForeignKeyField("models.User", related_name="tag_values", on_delete=fields.CASCADE)
    user_id: int
    tag = fields.ForeignKeyField("models.Tag", related_name="values", on_delete=fields.CASCADE)
    tag_id: int
    values = ArrayField("text", default=list)  # text[]: GIN-indexed for CONTAINS / IN filters
    source = fields.CharEnumField(TagSource, max_length=16, default=TagSource.MANUAL,
                                  db_default=TagSource.MANUAL.value)
    locked = fields.BooleanField(default=False, db_default=False)
    updated_at = fields.DatetimeField(db_default=Now(), auto_now=True)

    class Meta:
        table = "user_tags"
        unique_together = (("workspace", "user", "tag"),)
        indexes = (("workspace_id", "tag_id", "user_id"),)
