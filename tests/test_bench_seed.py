"""The benchmarks' seeder writes the current schema: a dropped or renamed column fails here, not in a 1M-user run."""
from __future__ import annotations

from bench.seed import seed
from models import db


async def test_bench_seed_fills_every_table_for_its_users(database_url: str) -> None:
    described = await seed(database_url, 50, reuse=False)
    counts = {t: await db.fetchval(f"SELECT count(*) FROM {t} WHERE workspace_id = 1")
              for t in ("users", "identities", "group_members", "user_tags")}
    assert counts == {"users": 50, "identities": 100, "group_members": 150, "user_tags": 250}
    assert described["users"] == 50
