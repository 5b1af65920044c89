"""Seed a workspace with N users for the benchmarks, set-based: COPY in batches, constant memory.

Each user has a PHONE and an EMAIL identity, 3 group memberships (of 20 groups) and 5 tag values.
`python bench/seed.py --users 1000000` prints seconds and rows/s; the benchmarks import `seed()`.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import embedded  # noqa: E402
from models import db  # noqa: E402

BENCH_DATA = Path("/tmp/roster-bench")  # embedded servers' data: never under /root or a home folder
BENCH_DB = "roster_bench_ops"  # bench/users_page.py keeps its own "roster_bench"
GROUPS = 20
TAGS = [("tier", "TEXT", []), ("interests", "MULTI_VALUE", ["golf", "tea", "wine", "travel", "music"]),
        ("spend", "NUMBER", []), ("vip", "BOOLEAN", []), ("city_code", "TEXT", [])]
TIERS = ["gold", "silver", "bronze", "none"]
FIRST = ["Li", "Wang", "Zhang", "Anna", "Ravi", "Maria", "John", "Aisha", "Kenji", "Lucas"]
LAST = ["Lei", "Fang", "Smith", "Garcia", "Kumar", "Sato", "Silva", "Okafor"]
LEVELS = ["gold", "silver", "bronze"]
CHUNK = 100_000


async def database_url(name: str = BENCH_DB) -> str:
    """DATABASE_URL's server, or an embedded one under /tmp/roster-bench; the bench database `name`, migrated."""
    server = os.environ.get("DATABASE_URL") or embedded.start_postgres(BENCH_DATA)
    url = await embedded.ensure_database(server, name)
    await db.migrate(url)
    return url


async def seeded_count(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM users WHERE workspace_id = 1") if await conn.fetchval(
        "SELECT 1 FROM workspaces WHERE id = 1") else 0


async def seed(url: str, users: int, *, reuse: bool = True) -> dict[str, Any]:
    """Workspace 1 with `users` users (reused when already seeded with that many); returns ids to query."""
    conn = await asyncpg.connect(url)
    try:
        if reuse and await seeded_count(conn) == users:
            return await _describe(conn)
        # The tables without foreign keys (migrations/0005) are not reached by CASCADE.
        await conn.execute("TRUNCATE workspaces, group_members, user_tags, shared_activities, deleted_parents"
                           " RESTART IDENTITY CASCADE")
        started = time.perf_counter()
        await conn.execute("INSERT INTO workspaces (id, name, default_region, account_deletion_enabled,"
                           " user_list_columns, created_at) VALUES (1, 'Bench', 'CN', true, '[]', now())")
        await conn.copy_records_to_table("groups", columns=["id", "workspace_id", "name", "labels", "source"],
                                         records=[(g, 1, f"Group {g}", "[]", "MANUAL") for g in range(1, GROUPS + 1)])
        await conn.copy_records_to_table(
            "tags", columns=["id", "workspace_id", "key", "name", "type", "allowed_values", "created_at"],
            records=[(i, 1, key, key.title(), type_, _json(allowed), dt.datetime.now(dt.UTC))
                     for i, (key, type_, allowed) in enumerate(TAGS, 1)])
        for start in range(0, users, CHUNK):
            await _seed_chunk(conn, start, min(start + CHUNK, users))
        for table in ("users", "identities", "groups", "tags"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                               f" (SELECT COALESCE(max(id), 1) FROM {table}))")
        await conn.execute("VACUUM ANALYZE")
        seconds = time.perf_counter() - started
        rows = users * (1 + 2 + 3 + 5)
        print(f"seeded {users:,} users ({rows:,} rows) in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
        return await _describe(conn)
    finally:
        await conn.close()


async def _seed_chunk(conn: asyncpg.Connection, start: int, end: int) -> None:
    epoch = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    ids = range(start + 1, end + 1)
    await conn.copy_records_to_table(
        "users", columns=["id", "workspace_id", "username", "account_type", "display_name", "first_name", "last_name",
                          "gender", "member_level", "city", "country", "source", "locked_fields", "created_at",
                          "updated_at"],
        records=[(i, 1, f"user{i}", "GENERAL", f"{FIRST[i % 10]} {LAST[i % 8]}", FIRST[i % 10], LAST[i % 8],
                  "FEMALE" if i % 2 else "MALE", LEVELS[i % 3], "Hangzhou" if i % 4 else "Shanghai", "CN",
                  "IMPORT", "[]", epoch + dt.timedelta(seconds=i * 30), epoch + dt.timedelta(seconds=i * 30))
                 for i in ids])
    now = dt.datetime.now(dt.UTC)
    await conn.copy_records_to_table(
        "identities", columns=["id", "workspace_id", "user_id", "type", "channel", "value", "encryption", "source",
                               "first_seen_at", "last_seen_at"],
        records=[row for i in ids for row in (
            (2 * i - 1, 1, i, "PHONE", "", f"+8613{i:09d}", "NONE", "seed", now, now),
            (2 * i, 1, i, "EMAIL", "", f"user{i}@example.com", "NONE", "seed", now, now))])
    await conn.copy_records_to_table(
        "group_members", columns=["workspace_id", "group_id", "user_id", "source", "added_at"],
        records=[(1, (i + 7 * k) % GROUPS + 1, i, "MANUAL", now) for i in ids for k in range(3)])
    await conn.copy_records_to_table(
        "user_tags", columns=["workspace_id", "user_id", "tag_id", "values", "source", "locked", "updated_at"],
        records=[row for i in ids for row in (
            (1, i, 1, [TIERS[i % 4]], "IMPORT", False, now),
            (1, i, 2, sorted({TAGS[1][2][i % 5], TAGS[1][2][(i // 5) % 5]}), "IMPORT", False, now),
            (1, i, 3, [str(i % 1000)], "IMPORT", False, now),
            (1, i, 4, ["true" if i % 10 == 0 else "false"], "IMPORT", False, now),
            (1, i, 5, [f"C{i % 300}"], "IMPORT", False, now))])


async def _describe(conn: asyncpg.Connection) -> dict[str, Any]:
    return {"workspace_id": 1, "group_ids": list(range(1, GROUPS + 1)), "tag_keys": [t[0] for t in TAGS],
            "users": await seeded_count(conn)}


async def api_key(url: str, role: str = "ADMIN") -> str:
    """A fresh API key of workspace 1 (through the models, as `roster apikey create` does)."""
    from tortoise import Tortoise

    from models.enums import Role
    from models.workspaces import create_api_key

    await Tortoise.init(config=db.tortoise_config(url, pool_max=2))
    try:
        _, token = await create_api_key(1, "bench", Role(role))
        return token
    finally:
        await Tortoise.close_connections()


async def flush_redis(redis_url: str) -> None:
    """Job ids restart with a fresh database, and arq keeps results for an hour: forget the last run's."""
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    await pool.flushdb()
    await pool.aclose()


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(client: Any, base: str) -> None:
    """Poll /health of a server we started (loopback only, bounded)."""
    import httpx

    for _ in range(300):
        try:
            if (await client.get(f"{base}/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the API did not start")


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    args = parser.parse_args()
    await seed(await database_url(), args.users, reuse=False)


if __name__ == "__main__":
    asyncio.run(_main())
