"""Runs every job kind: claims an attempt, calls the kind's handler, records how the job ended.

The `jobs` row is the truth and arq only carries attempts. Each attempt has its own number and arq id
(`job:<id>:<attempt>`); the row's `attempts` names the current one and every write of an attempt is
fenced on it, so an older attempt that wakes up (an arq retry, a worker that was presumed dead) can
neither start nor write. A handler commits its work in batches, each in one transaction together with
`JobRun.save` (checkpoint, progress, counts): a later attempt resumes at the checkpoint and a cancelled
job keeps exactly the batches it committed.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from arq.connections import ArqRedis
from arq.jobs import Job as ArqJob, JobStatus as ArqJobStatus
from arq.worker import Retry, func

from models import db
from models.enums import JobKind, JobStatus
from models.errors import DomainError
from settings import get_settings
from models.jobs import RUN_JOB, arq_job_id, enqueue_attempt

logger = logging.getLogger("roster.jobs")

# A live attempt refreshes its heartbeat this often (besides every save); one silent for
# STALE_AFTER_S lost its worker and recover_stale_jobs queues the next attempt.
HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0
# An attempt is a slice of work, not the whole job: past this arq cancels it and the next attempt resumes.
ATTEMPT_TIMEOUT_S = 6 * 3600
# start_job inside a transaction may be picked up before the commit: look again a few times.
MISSING_ROW_TRIES, MISSING_ROW_DEFER_S = 3, 1.0
MAX_ERROR_CHARS = 2000


class JobCancelled(Exception):
    """The job was cancelled: the handler stops, the batches it committed stay."""


class JobSuperseded(Exception):
    """A newer attempt owns the job (this one was presumed dead): stop without writing anything."""


@dataclass
class JobResult:
    counts: dict[str, Any]
    result_file_id: int | None = None
    error_file_id: int | None = None


@dataclass
class JobRun:
    """What a handler gets: the job, where the previous attempt stopped, and the ways to report."""

    id: int
    workspace_id: int
    kind: JobKind
    params: dict[str, Any]
    checkpoint: dict[str, Any] | None
    attempt: int
    created_by: str | None

    async def set_total(self, total: int | None) -> None:
        await self._update("progress_total = $3", total)

    async def save(self, conn: Any, *, checkpoint: dict[str, Any], done: int, counts: dict[str, Any]) -> None:
        """Record a batch in the caller's transaction; raises (rolling the batch back) if the job was
        cancelled or taken over meanwhile, so what is committed always matches the checkpoint."""
        await self._update("checkpoint = $3::jsonb, progress_done = $4, counts = $5::jsonb",
                           orjson.dumps(checkpoint).decode(), done, orjson.dumps(counts).decode(), conn=conn)
        self.checkpoint = checkpoint

    async def check_cancelled(self) -> None:
        """Raise JobCancelled (or JobSuperseded) when the job should stop; call it between batches."""
        row = await db.fetchrow("SELECT status, attempts FROM jobs WHERE id = $1", self.id)
        if row is None or row["status"] != JobStatus.RUNNING.value or row["attempts"] != self.attempt:
            raise _why_stopped(row, self.attempt)

    async def heartbeat(self) -> None:
        await self._update("attempts = attempts")  # _update refreshes heartbeat_at

    async def _update(self, assignments: str, *args: Any, conn: Any = None) -> None:
        done = await db.fetchval(
            f"UPDATE jobs SET {assignments}, heartbeat_at = now()"
            " WHERE id = $1 AND attempts = $2 AND status = 'RUNNING' RETURNING true",
            self.id, self.attempt, *args, conn=conn)
        if not done:
            raise _why_stopped(await db.fetchrow("SELECT status, attempts FROM jobs WHERE id = $1", self.id,
                                                 conn=conn), self.attempt)


def _why_stopped(row: asyncpg.Record | None, attempt: int) -> Exception:
    if row is not None and row["status"] == JobStatus.CANCELLED.value:
        return JobCancelled()
    return JobSuperseded(f"attempt {attempt} no longer owns the job ({dict(row) if row else 'deleted'})")


Handler = Callable[[JobRun], Awaitable[JobResult]]
# One handler per job kind; jobs/imports.py, exports.py, pushes.py register theirs.
HANDLERS: dict[JobKind, Handler] = {}


async def run_job(ctx: dict[str, Any], job_id: int, attempt: int) -> str:
    """The arq function "run_job": one attempt at a job. Returns how it ended (arq logs it)."""
    row = await db.fetchrow(
        "UPDATE jobs SET status = 'RUNNING', attempts = $2, heartbeat_at = now(),"
        " started_at = COALESCE(started_at, now())"
        " WHERE id = $1 AND status IN ('QUEUED', 'RUNNING') AND attempts <= $2 RETURNING *", job_id, attempt)
    if row is None:
        current = await db.fetchrow("SELECT status, attempts FROM jobs WHERE id = $1", job_id)
        if current is None and ctx.get("job_try", 1) < MISSING_ROW_TRIES:
            raise Retry(defer=MISSING_ROW_DEFER_S)
        logger.info("job %s attempt %s skipped: %s", job_id, attempt, dict(current) if current else "no such job")
        return "skipped"

    run = JobRun(id=row["id"], workspace_id=row["workspace_id"], kind=JobKind(row["kind"]),
                 params=db.json_value(row["params"]) or {}, checkpoint=db.json_value(row["checkpoint"]),
                 attempt=attempt, created_by=row["created_by"])
    beat = asyncio.create_task(_keep_alive(run))
    try:
        handler = HANDLERS.get(run.kind)
        if handler is None:
            raise RuntimeError(f"no handler for {run.kind.value} jobs")
        result = await handler(run)
    except JobCancelled:
        await db.execute("UPDATE jobs SET finished_at = COALESCE(finished_at, now()) WHERE id = $1", run.id)
        return "cancelled"
    except JobSuperseded as exc:
        logger.warning("job %s: %s", run.id, exc)
        return "superseded"
    except Exception as exc:  # noqa: BLE001 - a failing handler fails its job, not the worker
        logger.exception("job %s (%s) attempt %s failed", run.id, run.kind.value, attempt)
        await _finish(run, "status = 'FAILED', error = $3", _error_text(exc))
        return "failed"
    finally:
        # An attempt cancelled by arq (timeout, shutdown) leaves the job RUNNING with a heartbeat that
        # stops here: recover_stale_jobs queues the next attempt, which resumes at the checkpoint.
        beat.cancel()
    await _finish(run, "status = 'SUCCEEDED', counts = $3::jsonb, result_file_id = $4, error_file_id = $5",
                  orjson.dumps(result.counts).decode(), result.result_file_id, result.error_file_id)
    return "succeeded"


async def _finish(run: JobRun, assignments: str, *args: Any) -> None:
    # Fenced like every write: a job cancelled during its last step stays CANCELLED.
    await db.execute(f"UPDATE jobs SET {assignments}, finished_at = now(), heartbeat_at = now()"
                     " WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'", run.id, run.attempt, *args)


def _error_text(exc: Exception) -> str:
    text = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


async def _keep_alive(run: JobRun) -> None:
    """Refresh the heartbeat while the handler works, so a long batch is not taken for a dead worker."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        try:
            await run.heartbeat()
        except (JobCancelled, JobSuperseded):
            return  # the handler finds out at its next check or save
        except Exception:  # noqa: BLE001 - a lost beat is retried at the next one
            logger.warning("job %s: heartbeat failed", run.id, exc_info=True)


async def recover_stale_jobs(redis: ArqRedis, stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Queue a new attempt for jobs whose attempt is lost; returns their ids. Safe to run concurrently.

    - RUNNING with a heartbeat older than `stale_after_s`: its worker died or arq cancelled it.
      The job goes back to QUEUED under the next attempt number (one conditional UPDATE, so only one
      caller wins), and the new attempt resumes at the saved checkpoint.
    - QUEUED for longer than that while its attempt is in no arq queue: the enqueue was lost, or the
      attempt ran before the row was committed and gave up.
    """
    recovered: list[int] = []
    rows = await db.fetch(
        "UPDATE jobs SET status = 'QUEUED', attempts = attempts + 1, heartbeat_at = now()"
        " WHERE status = 'RUNNING' AND heartbeat_at < now() - make_interval(secs => $1)"
        " RETURNING id, attempts", float(stale_after_s))
    for row in rows:
        logger.warning("job %s lost its worker: queueing attempt %s", row["id"], row["attempts"])
        await enqueue_attempt(redis, row["id"], row["attempts"])
        recovered.append(row["id"])

    waiting = await db.fetch(
        "SELECT id, attempts FROM jobs WHERE status = 'QUEUED'"
        " AND COALESCE(heartbeat_at, created_at) < now() - make_interval(secs => $1)", float(stale_after_s))
    for row in waiting:
        attempt = max(row["attempts"], 1)
        state = await ArqJob(arq_job_id(row["id"], attempt), redis).status()
        if state is ArqJobStatus.not_found:
            if await enqueue_attempt(redis, row["id"], attempt):
                recovered.append(row["id"])
        elif state is ArqJobStatus.complete:
            bumped = await db.fetchval(
                "UPDATE jobs SET attempts = $3, heartbeat_at = now()"
                " WHERE id = $1 AND status = 'QUEUED' AND attempts = $2 RETURNING attempts",
                row["id"], row["attempts"], attempt + 1)
            if bumped is not None:
                await enqueue_attempt(redis, row["id"], bumped)
                recovered.append(row["id"])
    return recovered


async def recover_stale_jobs_cron(ctx: dict[str, Any]) -> list[int]:
    """The worker's periodic recovery (and its startup call): `ctx["redis"]` is arq's pool."""
    return await recover_stale_jobs(ctx["redis"], get_settings().job_stale_after_s)


# What the worker registers: `run_job` by name, with a long timeout (an attempt is resumable anyway).
RUN_JOB_FUNCTION = func(run_job, name=RUN_JOB, timeout=ATTEMPT_TIMEOUT_S)

# The job kinds register their handlers on import.
import jobs.imports  # noqa: E402,F401
import jobs.exports  # noqa: E402,F401
import jobs.pushes  # noqa: E402,F401

__all__ = ["HANDLERS", "RUN_JOB_FUNCTION", "Handler", "JobCancelled", "JobResult", "JobRun", "JobSuperseded",
           "recover_stale_jobs", "recover_stale_jobs_cron", "run_job"]
