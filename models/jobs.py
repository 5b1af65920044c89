"""Background jobs (imports, exports, pushes) and the files they read and write."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models import db
from models.enums import JobKind, JobStatus
from models.errors import DomainError, NotFound

if TYPE_CHECKING:
    from arq.connections import ArqRedis


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
    # Written by the running attempt; a RUNNING job whose heartbeat is old lost its worker (jobs/runner.py).
    heartbeat_at = fields.DatetimeField(null=True)
    error_file = fields.ForeignKeyField("models.File", related_name=False, null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "jobs"
        indexes = (("workspace_id", "kind", "status"), ("workspace_id", "id"))


# The arq function that runs every job kind (jobs/runner.py), enqueued by name.
RUN_JOB = "run_job"
FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# Who may start or cancel a job of each kind (reading any job needs "jobs:read").
KIND_PERMISSIONS = {JobKind.IMPORT: "imports:write", JobKind.EXPORT: "users:export", JobKind.PUSH: "pushes:write"}


def arq_job_id(job_id: int, attempt: int) -> str:
    """arq's id for one attempt: arq refuses a second enqueue of it while it is queued, running or kept."""
    return f"job:{job_id}:{attempt}"


async def enqueue_attempt(redis: ArqRedis, job_id: int, attempt: int) -> bool:
    """Queue `run_job(job_id, attempt)`; False when that attempt is already queued, running or done."""
    return await redis.enqueue_job(RUN_JOB, job_id, attempt, _job_id=arq_job_id(job_id, attempt)) is not None


async def start_job(workspace_id: int, kind: JobKind, params: dict[str, Any], *, created_by: str,
                    redis: ArqRedis, conn: Any = None) -> int:
    """Insert a QUEUED job and queue its first attempt; returns the job's id.

    With `conn` (the caller's transaction) the worker may pick the attempt up before the commit:
    run_job then retries shortly, and recover_stale_jobs re-queues a job whose attempt was lost.
    """
    job_id = await insert_job(workspace_id, kind, params, created_by=created_by, conn=conn)
    await enqueue_attempt(redis, job_id, 1)
    return job_id


async def insert_job(workspace_id: int, kind: JobKind, params: dict[str, Any], *, created_by: str,
                     conn: Any = None) -> int:
    """The QUEUED row alone: enqueue_attempt(redis, id, 1) after the caller's transaction commits."""
    return await db.fetchval(
        "INSERT INTO jobs (workspace_id, kind, status, params, progress_done, counts, attempts, created_by, created_at)"
        " VALUES ($1, $2, 'QUEUED', $3::jsonb, 0, '{}'::jsonb, 0, $4, now()) RETURNING id",
        workspace_id, kind.value, orjson.dumps(params).decode(), created_by, conn=conn)


async def job_row(workspace_id: int, job_id: int, conn: Any = None) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM jobs WHERE workspace_id = $1 AND id = $2", workspace_id, job_id,
                             conn=conn)


class JobFinished(DomainError):
    def __init__(self, row: asyncpg.Record) -> None:
        super().__init__("JOB_FINISHED", "the job has already finished", ["id"])
        self.row = row


async def cancel_job(workspace_id: int, job_id: int) -> asyncpg.Record:
    """Mark an unfinished job CANCELLED; its worker stops before the next batch, keeping committed ones.

    NotFound for another workspace's job; JobFinished (with the row) when it already ended.
    """
    row = await db.fetchrow(
        "UPDATE jobs SET status = 'CANCELLED', finished_at = now()"
        " WHERE workspace_id = $1 AND id = $2 AND status IN ('QUEUED', 'RUNNING') RETURNING *",
        workspace_id, job_id)
    if row is not None:
        return row
    row = await job_row(workspace_id, job_id)
    raise NotFound("job", ["id"]) if row is None else JobFinished(row)


def _list_filter(workspace_id: int, kinds: Sequence[JobKind] | None,
                 statuses: Sequence[JobStatus] | None) -> tuple[list[str], list[Any]]:
    where, args = ["workspace_id = $1"], [workspace_id]
    if kinds is not None:
        args.append([k.value for k in kinds])
        where.append(f"kind = ANY(${len(args)}::text[])")
    if statuses is not None:
        args.append([s.value for s in statuses])
        where.append(f"status = ANY(${len(args)}::text[])")
    return where, args


async def list_jobs(workspace_id: int, *, kinds: Sequence[JobKind] | None = None,
                    statuses: Sequence[JobStatus] | None = None, before_id: int | None = None,
                    limit: int = 50) -> list[asyncpg.Record]:
    """Newest first (keyset on id): the jobs older than `before_id`."""
    where, args = _list_filter(workspace_id, kinds, statuses)
    if before_id is not None:
        args.append(before_id)
        where.append(f"id < ${len(args)}")
    return await db.fetch(f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT {int(limit)}",
                          *args)


async def count_jobs(workspace_id: int, *, kinds: Sequence[JobKind] | None = None,
                     statuses: Sequence[JobStatus] | None = None) -> int:
    where, args = _list_filter(workspace_id, kinds, statuses)
    return await db.fetchval(f"SELECT count(*) FROM jobs WHERE {' AND '.join(where)}", *args)
