"""The EXPORT job: the selected users, in keyset batches, into a streamed ZIP of one CSV.

Each batch is two statements: the next ids of the selection (the same compiled filter as `users`), then
one row of text cells per user (models/exports.py `batch_sql`). All of them read one snapshot (exported
from a lead connection to the readers), so the file is the selection as it was when the export began.
Without encrypted columns the CSV text comes straight out of PostgreSQL's COPY; with AES columns the rows
are fetched and encrypted here.
Compressing batch N runs in a thread while the database works on batch N+1.

An export writes nothing to the database but its file, so it does not resume: a retried attempt
(a worker died) starts over, and removes the partial file of the attempt it replaces. A cancelled or
failed attempt removes its own.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from jobs.export_writer import CsvZipWriter
from jobs.runner import HANDLERS, JobResult, JobRun
from models import db
from models.enums import JobKind
from models.exports import AES, ExportParams, Selection, batch_sql, export_key, tag_definitions
from models.files import create_file, files_root

BATCH_SIZE = 10_000
IN_FLIGHT = 2  # batches PostgreSQL reads at once (the machine's cores, not more)


def part_path(workspace_id: int, job_id: int, attempt: int) -> Path:
    """Where an attempt writes: named per attempt, so an attempt presumed dead cannot write into its successor's."""
    return files_root() / str(workspace_id) / f".export-{job_id}-{attempt}.zip.part"


def _remove_parts(workspace_id: int, job_id: int) -> None:
    for part in (files_root() / str(workspace_id)).glob(f".export-{job_id}-*.zip.part"):
        part.unlink(missing_ok=True)


async def run_export(run: JobRun) -> JobResult:
    """The EXPORT handler (registered in HANDLERS)."""
    params = ExportParams.from_json(run.params)
    workspace = await db.fetchrow("SELECT default_region FROM workspaces WHERE id = $1", run.workspace_id)
    tags = await tag_definitions(run.workspace_id) if params.filter and params.filter.tags else {}
    selection = Selection(run.workspace_id, params.filter, tags, workspace["default_region"])
    aes_columns = [i for i, c in enumerate(params.columns) if c.kind == "IDENTITY" and c.encryption == AES]
    key = await export_key(run.workspace_id) if aes_columns else None
    counts: dict[str, Any] = {"users": 0, "columns": len(params.columns), "omittedColumns": params.omitted}

    _remove_parts(run.workspace_id, run.id)  # a lost attempt's partial file
    part = part_path(run.workspace_id, run.id, run.attempt)
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        async with _snapshot(IN_FLIGHT) as (lead, readers):
            sql, args = selection.count_sql()
            await run.set_total(await lead.fetchval(sql, *args))
            with CsvZipWriter(part, f"users-export-{run.id}.csv", aes_key=key, aes_columns=aes_columns) as writer:
                writer.header([c.label for c in params.columns])
                batches = _batches(lead, readers, run.workspace_id, params, selection, bool(aes_columns), BATCH_SIZE)
                async with contextlib.aclosing(batches):
                    await _write(run, writer, batches, counts)
        await run.check_cancelled()
        stored = await create_file(run.workspace_id, "EXPORT", f"users-export-{run.id}.zip", part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return JobResult(counts=counts, result_file_id=stored["id"])


async def _write(run: JobRun, writer: CsvZipWriter, batches: AsyncIterator[tuple[str, Any, int]],
                 counts: dict[str, Any]) -> None:
    """Compress batch N in a thread while batch N+1 is read; report progress after each batch."""
    writing: asyncio.Future[None] | None = None
    try:
        async for kind, payload, users in batches:
            if writing is not None:
                await asyncio.shield(writing)  # cancelled here, the write goes on: `finally` waits for it
            write = writer.copy_text if kind == "copy" else writer.records
            writing = asyncio.ensure_future(asyncio.to_thread(write, payload))
            counts["users"] += users
            # Fenced like every job write: raises JobCancelled / JobSuperseded between batches.
            await run.save(None, checkpoint={"users": counts["users"]}, done=counts["users"], counts=counts)
    finally:
        if writing is not None:
            # The file must not be closed under a write in progress. A thread cannot be cancelled: if this
            # task is cancelled, a plain `await writing` would cancel the future and return at once while
            # the thread still writes; shielded, the wait goes on until the thread is done.
            await _wait_through_cancellation(writing)


async def _wait_through_cancellation(future: asyncio.Future[None]) -> None:
    """Await `future` to its end even when cancelled meanwhile (then re-raise the CancelledError after)."""
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            if future.done():  # the future itself was cancelled, not this wait
                raise
            cancelled = exc
            continue
        except BaseException:
            if cancelled is not None:
                raise cancelled from None
            raise
        break
    if cancelled is not None:
        raise cancelled


@contextlib.asynccontextmanager
async def _snapshot(readers: int) -> AsyncIterator[tuple[asyncpg.Connection, list[asyncpg.Connection]]]:
    """A lead connection and `readers` more (outside the pool), all in one read-only REPEATABLE READ snapshot."""
    async with contextlib.AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(db.dedicated_connection()) for _ in range(readers + 1)]
        snapshot = None
        for conn in connections:
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            stack.push_async_callback(tx.rollback)
            if snapshot is None:
                snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            else:
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        yield connections[0], connections[1:]


async def _batches(lead: asyncpg.Connection, readers: list[asyncpg.Connection], workspace_id: int,
                   params: ExportParams, selection: Selection, fetch_rows: bool,
                   batch_size: int) -> AsyncIterator[tuple[str, Any, int]]:
    """("copy", CSV bytes, users) or ("records", rows, users) per batch, in id order.

    The pages of ids are cheap and sequential (on `lead`); the heavy statement of each batch runs as its
    own task on the next of the `readers`, one batch each at a time, so PostgreSQL works on two batches at
    once while this process compresses.
    """
    pending: collections.deque[asyncio.Task[tuple[str, Any, int]]] = collections.deque()
    try:
        after, started = 0, 0
        while True:
            sql, args = selection.page_sql(after, batch_size)
            ids = [r[0] for r in await lead.fetch(sql, *args)]
            if not ids:
                break
            after = ids[-1]
            if len(pending) >= len(readers):  # the reader of the oldest batch in flight is needed again
                yield await pending.popleft()
            reader = readers[started % len(readers)]
            started += 1
            pending.append(asyncio.create_task(
                _read(reader, batch_sql(workspace_id, params.columns, ids), fetch_rows, len(ids))))
        while pending:
            yield await pending.popleft()
    finally:  # a cancelled job stops here: let the statements in flight end before the connections go back
        await asyncio.gather(*pending, return_exceptions=True)


async def _read(conn: asyncpg.Connection, rows_sql: str, fetch_rows: bool, users: int) -> tuple[str, Any, int]:
    if fetch_rows:
        return "records", await conn.fetch(rows_sql), users
    chunks: list[bytes] = []

    async def collect(data: bytes) -> None:
        chunks.append(data)

    await conn.copy_from_query(rows_sql, output=collect, format="csv")
    return "copy", b"".join(chunks), users


HANDLERS[JobKind.EXPORT] = run_export
