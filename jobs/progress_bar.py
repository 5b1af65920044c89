"""Running a job in the calling process (the `roster import` / `roster export` commands) with a progress bar."""
from __future__ import annotations

import asyncio
from typing import Any, TextIO

from jobs.runner import run_job
from models import db

WIDTH = 30


async def run_with_progress(job_id: int, out: TextIO, unit: str) -> Any:
    """Run the job's first attempt here, redrawing the bar on `out` twice a second; returns the final job row."""
    bar = asyncio.create_task(_redraw(job_id, out, unit))
    try:
        await run_job({}, job_id, 1)
    finally:
        bar.cancel()
    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    draw(row, out, unit, final=True)
    return row


async def _redraw(job_id: int, out: TextIO, unit: str) -> None:
    while True:
        draw(await db.fetchrow("SELECT status, progress_done, progress_total FROM jobs WHERE id = $1", job_id), out, unit)
        await asyncio.sleep(0.5)


def draw(row: Any, out: TextIO, unit: str, final: bool = False) -> None:
    done, total = row["progress_done"] or 0, row["progress_total"]
    filled = int(WIDTH * done / total) if total else (WIDTH if final else 0)
    share = f"{100 * done / total:5.1f}%" if total else ("100.0%" if final else "  ...%")
    out.write(f"\r[{'#' * filled}{'-' * (WIDTH - filled)}] {share} {done:,}/{total or 0:,} {unit}  {row['status']}")
    if final:
        out.write("\n")
    out.flush()
