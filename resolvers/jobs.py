"""Queries, mutation and subscription on background jobs."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from models import jobs as jobs_domain
from models.enums import JobKind as JobKindEnum, JobStatus as JobStatusEnum
from models.errors import DomainError, NotFound
from resolvers.context import BadRequest, Context
from schema.common import Connection, Edge, UserError, decode_cursor, encode_cursor, from_global_id, page, page_size
from schema.jobs import Job, JobCancelInput, JobCancelPayload, JobKind, JobStatus

# How often jobProgress looks at the job's row (progress lives in the row, so late subscribers see it too).
POLL_S = 0.3


async def job(info: Info, id: strawberry.ID) -> Job | None:
    ctx: Context = info.context
    ctx.require("jobs:read")
    try:
        row = await jobs_domain.job_row(ctx.workspace_id, from_global_id(id, "Job", ["id"])[1])
    except DomainError as exc:
        raise BadRequest(exc) from None
    return Job.from_row(row) if row else None


async def jobs(info: Info, kinds: list[JobKind] | None = None, statuses: list[JobStatus] | None = None,
               first: int | None = None, after: str | None = None) -> Connection[Job]:
    """The workspace's jobs, newest first (keyset on id)."""
    ctx: Context = info.context
    ctx.require("jobs:read")
    try:
        limit = page_size(first)
        before_id = None
        if after:
            (before_id,) = decode_cursor(after)
            before_id = int(before_id)
    except (DomainError, TypeError, ValueError) as exc:
        raise BadRequest(exc if isinstance(exc, DomainError) else
                         DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"])) from None
    kind_values = [JobKindEnum(k.value) for k in kinds] if kinds is not None else None
    status_values = [JobStatusEnum(s.value) for s in statuses] if statuses is not None else None
    rows = await jobs_domain.list_jobs(ctx.workspace_id, kinds=kind_values, statuses=status_values,
                                       before_id=before_id, limit=limit + 1)
    edges = [Edge(cursor=encode_cursor([r["id"]]), node=Job.from_row(r)) for r in rows[:limit]]

    async def count() -> int:
        return await jobs_domain.count_jobs(ctx.workspace_id, kinds=kind_values, statuses=status_values)

    return page(edges, has_more=len(rows) > limit, after=after, count=count)


async def job_cancel(info: Info, input: JobCancelInput) -> JobCancelPayload:
    """Stop a QUEUED or RUNNING job; a running one stops before its next batch, keeping the committed ones."""
    ctx: Context = info.context
    ctx.require("jobs:read")
    try:
        job_id = from_global_id(input.id, "Job", ["id"])[1]
        row = await jobs_domain.job_row(ctx.workspace_id, job_id)
        if row is None:
            raise NotFound("job", ["id"])
        ctx.require(jobs_domain.KIND_PERMISSIONS[JobKindEnum(row["kind"])])
        row = await jobs_domain.cancel_job(ctx.workspace_id, job_id)
    except jobs_domain.JobFinished as exc:
        return JobCancelPayload(job=Job.from_row(exc.row), user_errors=[UserError.of(exc)])
    except DomainError as exc:
        return JobCancelPayload(user_errors=[UserError.of(exc)])
    return JobCancelPayload(job=Job.from_row(row))


async def job_progress(info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
    """The job now, then again whenever its status or progress changes; ends once it has finished."""
    ctx: Context = info.context
    ctx.require("jobs:read")
    try:
        job_id = from_global_id(id, "Job", ["id"])[1]
    except DomainError as exc:
        raise BadRequest(exc) from None
    seen = None
    while True:
        row = await jobs_domain.job_row(ctx.workspace_id, job_id)
        if row is None:
            if seen is None:
                raise BadRequest(NotFound("job", ["id"]))
            return  # deleted with its workspace
        state = (row["status"], row["progress_done"], row["progress_total"], row["counts"], row["error"],
                 row["attempts"])
        if state != seen:
            seen = state
            yield Job.from_row(row)
        if JobStatusEnum(row["status"]) in jobs_domain.FINISHED:
            return
        await asyncio.sleep(POLL_S)
