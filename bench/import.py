"""Import a realistic contacts CSV (default 1,000,000 rows) through the real job path, against a floor
measured in the same run: a bare PostgreSQL COPY of the same file into an unlogged table.

    python bench/import.py [--rows 1000000] [--batch 5000] [--model-floor]

The file (bench/contacts_csv.py) mixes national and international phones of four regions, emails,
names, two tags and a group column, with ~5% repeated people and ~1% invalid rows. The import runs
in a `roster worker` process (its peak RSS is read from /proc) on a fresh database.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import embedded  # noqa: E402
from bench.contacts_csv import generate  # noqa: E402
from bench.seed import BENCH_DATA, flush_redis, peak_rss_mb  # noqa: E402
from models import db  # noqa: E402

DATABASE = "roster_bench_import"
MAPPING = [{"column": 0, "target": "NAME"}, {"column": 1, "target": "IDENTITY", "identityType": "PHONE"},
           {"column": 2, "target": "REGION"}, {"column": 3, "target": "IDENTITY", "identityType": "EMAIL"},
           {"column": 4, "target": "TAG", "tagKey": "tier"}, {"column": 5, "target": "TAG", "tagKey": "interests"},
           {"column": 6, "target": "GROUP"}]


async def fresh_database() -> tuple[str, str]:
    server = os.environ.get("DATABASE_URL") or embedded.start_postgres(BENCH_DATA)
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    finally:
        await conn.close()
    url = await embedded.ensure_database(server, DATABASE)
    await db.migrate(url)
    return server, url


async def copy_floor(url: str, path: Path) -> float:
    """Seconds for a bare COPY of the file into an unlogged table of text columns."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE UNLOGGED TABLE copy_floor (name text, phone text, region text, email text,"
                           " tier text, interests text, grp text)")
        started = time.perf_counter()
        await conn.copy_to_table("copy_floor", source=str(path), format="csv", header=True)
        seconds = time.perf_counter() - started
        await conn.execute("DROP TABLE copy_floor")
        return seconds
    finally:
        await conn.close()


async def model_floor(url: str) -> float:
    """Seconds for PostgreSQL alone to write the rows the import wrote, with their indexes: one
    INSERT ... SELECT per table into an empty copy (LIKE ... INCLUDING ALL), no parsing, ID mapping or
    client round trips. What any import into this schema costs on this machine, one table after another."""
    conn = await asyncpg.connect(url)
    try:
        seconds = 0.0
        for table in ("users", "identities", "group_members", "user_tags"):
            await conn.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
            started = time.perf_counter()
            await conn.execute(f"INSERT INTO floor_{table} SELECT * FROM {table}")
            seconds += time.perf_counter() - started
            await conn.execute(f"DROP TABLE floor_{table}")
        return seconds
    finally:
        await conn.close()


async def start_import(url: str, redis_url: str, data_dir: Path, path: Path) -> int:
    """Workspace, tags and upload, then importStart through the GraphQL app; returns the job id."""
    import httpx

    from app import create_app
    from models.enums import Role
    from models.workspaces import create_api_key, create_workspace
    from schema.common import from_global_id
    from settings import Settings

    app = create_app(url, redis_url, Settings(data_dir=data_dir, environment="production",
                                              max_upload_bytes=2 * 1024 ** 3))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600) as client:
        workspace = await create_workspace("Import bench", default_region="CN")
        _, token = await create_api_key(workspace.id, "bench", Role.ADMIN)
        headers = {"Authorization": f"Bearer {token}"}

        async def gql(query: str, **variables: object) -> dict:
            body = (await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)).json()
            (payload,) = body["data"].values()
            assert not payload.get("userErrors"), payload
            return payload

        create_tag = "mutation($i: TagCreateInput!) { tagCreate(input: $i) { tag { key } userErrors { code } } }"
        await gql(create_tag, i={"key": "tier", "name": "Tier", "type": "TEXT"})
        await gql(create_tag, i={"key": "interests", "name": "Interests", "type": "MULTI_VALUE",
                                 "allowedValues": ["golf", "tea", "wine", "travel", "music"]})
        group = (await gql("mutation { groupCreate(input: {name: \"Imported\"}) { group { id } userErrors { code } } }"
                           ))["group"]["id"]
        with path.open("rb") as body:
            upload = (await client.post("/uploads?name=contacts.csv", content=body.read(), headers=headers)).json()
        started = await gql("mutation($i: ImportStartInput!) { importStart(input: $i) { job { id } userErrors"
                            " { code message } } }", i={"uploadId": upload["uploadId"], "mapping": MAPPING,
                                                         "groupIds": [group], "source": "bench"})
        return from_global_id(started["job"]["id"])[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--model-floor", action="store_true",
                        help="also time PostgreSQL writing the imported rows alone (INSERT ... SELECT)")
    args = parser.parse_args()
    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    path = BENCH_DATA / f"contacts-{args.rows}.csv"
    if not path.exists():
        started = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")
    _, url = await fresh_database()
    floor = await copy_floor(url, path)

    redis = embedded.EmbeddedRedis(BENCH_DATA / "redis-import")
    redis_url = os.environ.get("REDIS_URL") or redis.start()
    await flush_redis(redis_url)  # job ids restart with the fresh database: forget the last run's arq jobs
    data_dir = BENCH_DATA / "import-data"
    job_id = await start_import(url, redis_url, data_dir, path)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "DATA_DIR": str(data_dir),
           "IMPORT_BATCH_SIZE": str(args.batch)}
    env.pop("XDG_RUNTIME_DIR", None)
    started = time.perf_counter()
    worker = subprocess.Popen([str(Path(sys.executable).with_name("roster")), "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = await asyncpg.connect(url)
    try:
        while True:
            row = await conn.fetchrow("SELECT status, counts, error FROM jobs WHERE id = $1", job_id)
            if row["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
        rss = peak_rss_mb(worker.pid)
    finally:
        await conn.close()
        worker.terminate()
        worker.wait()
        redis.stop()
    print(f"\nimport of {args.rows:,} rows (batches of {args.batch}): {row['status']} {row['error'] or ''}")
    print(f"counts: {row['counts']}")
    print(f"floor (bare COPY into an unlogged table): {floor:6.2f} s = {args.rows / floor:10,.0f} rows/s")
    print(f"import through the job path:              {seconds:6.2f} s = {args.rows / seconds:10,.0f} rows/s"
          f"   ratio {seconds / floor:.1f}x the floor   worker peak RSS {rss:.0f} MB")
    if args.model_floor:
        rows_floor = await model_floor(url)
        print(f"model floor (the imported rows re-inserted by PostgreSQL alone, indexes included): {rows_floor:6.2f} s"
              f"   import {seconds / rows_floor:.1f}x that")
    print("(goal: <= 15 s, <= 15x the floor, RSS <= 400 MB)")


if __name__ == "__main__":
    asyncio.run(main())
