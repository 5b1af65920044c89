"""Export every user of a seeded workspace (default 1,000,000) through the real job path, in a `roster worker`.

    python bench/export.py [--users 1000000] [--batch 10000]

Two runs, each on a fresh worker process: every column in plain text (the CSV comes out of PostgreSQL's
COPY), then the same with the PHONE column AES-encrypted (rows fetched and encrypted in Python).
Prints the job's seconds (started -> finished, from the jobs row), the ZIP's size and the worker's peak RSS.
The data lives in its own database (roster_bench_export), seeded by bench/seed.py.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import embedded  # noqa: E402
from bench.seed import BENCH_DATA, database_url, flush_redis, peak_rss_mb, seed  # noqa: E402
from models import db  # noqa: E402

DATABASE = "roster_bench_export"
RUNS = {"plain": {}, "PHONE as AES": {"PHONE": "AES"}}


async def start_export(url: str, redis_url: str, encryption: dict[str, str]) -> int:
    """An EXPORT job of every user and column, planned for an ADMIN, queued; returns its id."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from tortoise import Tortoise

    from models.enums import JobKind, Role
    from models.exports import ExportParams, plan_columns, tag_definitions
    from models.jobs import enqueue_attempt, insert_job
    from models.permissions import Principal

    await Tortoise.init(config=db.tortoise_config(url, pool_max=2))
    try:
        admin = Principal(workspace_id=1, key_id=0, key_name="bench", role=Role.ADMIN)
        plan = plan_columns(admin, None, encryption, await tag_definitions(1))
        params = ExportParams(filter=None, columns=plan.columns, omitted=plan.omitted)
        job_id = await insert_job(1, JobKind.EXPORT, params.to_json(), created_by="bench")
    finally:
        await Tortoise.close_connections()
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await enqueue_attempt(redis, job_id, 1)
    finally:
        await redis.aclose()
    return job_id


async def run_once(url: str, redis_url: str, data_dir: Path, name: str, encryption: dict[str, str],
                   batch: int) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "DATA_DIR": str(data_dir)}
    env.pop("XDG_RUNTIME_DIR", None)
    code = ("import sys, jobs.exports as e; e.BATCH_SIZE = int(sys.argv[1]); import cli;"
            " sys.argv = ['roster', 'worker']; sys.exit(cli.main())")
    worker = subprocess.Popen([sys.executable, "-c", code, str(batch)], env=env, cwd=Path(__file__).parent.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = await asyncpg.connect(url)
    try:
        await asyncio.sleep(3)  # let the worker start: its startup is not the export's time
        rss_idle = peak_rss_mb(worker.pid)
        queued = time.perf_counter()
        job_id = await start_export(url, redis_url, encryption)
        while True:
            row = await conn.fetchrow("SELECT status, error, counts, result_file_id,"
                                      " extract(epoch FROM finished_at - started_at) AS seconds"
                                      " FROM jobs WHERE id = $1", job_id)
            if row["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - queued
        rss = peak_rss_mb(worker.pid)
        size = await conn.fetchval("SELECT size FROM files WHERE id = $1", row["result_file_id"]) or 0
    finally:
        await conn.close()
        worker.terminate()
        worker.wait()
    return {"name": name, "status": row["status"], "error": row["error"], "seconds": float(row["seconds"] or 0),
            "wall": wall, "mb": size / 1e6, "rss": rss, "rss_idle": rss_idle, "counts": db.json_value(row["counts"])}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    url = await database_url(DATABASE)
    await seed(url, args.users)
    redis = embedded.EmbeddedRedis(BENCH_DATA / "redis-export")
    redis_url = os.environ.get("REDIS_URL") or redis.start()
    await flush_redis(redis_url)  # job ids restart with a reseeded database: forget the last run's arq jobs
    results = []
    try:
        for name, encryption in RUNS.items():
            results.append(await run_once(url, redis_url, BENCH_DATA / "export-data", name, encryption, args.batch))
    finally:
        redis.stop()
    print(f"\nexport of {args.users:,} users, every column (batches of {args.batch:,}):")
    for r in results:
        print(f"  {r['name']:<14} {r['status']:<9} {r['seconds']:6.2f} s job ({r['wall']:.2f} s from enqueue)"
              f"  {args.users / max(r['seconds'], 1e-9):>9,.0f} users/s  ZIP {r['mb']:6.1f} MB"
              f"  worker peak RSS {r['rss']:.0f} MB (idle {r['rss_idle']:.0f} MB)  {r['error'] or ''}")
    print("(goal: <= 15 s, worker RSS <= 300 MB)")


if __name__ == "__main__":
    asyncio.run(main())
