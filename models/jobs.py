"""Background jobs (imports, exports, pushes) and the files they read and write."""
from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models.enums import JobKind, JobStatus


class File(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    kind = fields.CharField(max_length=32)  # UPLOAD | EXPORT | ERROR_REPORT
    storage_key = fields.CharField(max_length=500)
    name = fields.CharField(max_length=300)
    content_type = fields.CharField(max_length=100, null=True)
    size = fields.BigIntField(default=0)
    sha256 = fields.CharField(max_length=64, null=True)
    expires_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "files"
        indexes = (("workspace_id", "created_at"),)


class Job(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    kind = fields.CharEnumField(JobKind, max_length=16)
    status = fields.CharEnumField(JobStatus, max_length=16, default=JobStatus.QUEUED)
    params = fields.JSONField(default=dict)
    progress_done = fields.BigIntField(default=0)
    progress_total = fields.BigIntField(null=True)
    counts = fields.JSONField(default=dict)
    result_file = fields.ForeignKeyField("models.File", related_name=False, null=True, on_delete=fields.SET_NULL)
    error = fields.TextField(null=True)
    attempts = fields.IntField(default=0)
    checkpoint = fields.JSONField(null=True)
    created_by = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "jobs"
        indexes = (("workspace_id", "kind", "status"), ("workspace_id", "id"))
