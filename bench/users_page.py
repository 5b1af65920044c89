"""Benchmark of the users page at scale, over real HTTP.

Seeds N users (default 1,000,000) with identities, group memberships and tag values by COPY, starts the real
API under uvicorn in a subprocess, then measures

    users(first: 50, filter: {groupIds: [g], tags: [{key: "tier", op: IN, values: ["silver"]}]})

with nested identities / groups / tags, walking pages 1..10 by `after` cursors, against a floor measured in
the same run (`{ viewer { role } }` over the same HTTP path, and the page's raw SQL over asyncpg). It prints
p50/p95/p99, req/s, CPU per request, ratios to the floor, and EXPLAIN ANALYZE of the page's SQL.

    .venv/bin/python bench/users_page.py --users 20000
    .venv/bin/python bench/users_page.py --keep          # reuse the seeded 1M database

Servers: DATABASE_URL / REDIS_URL from the environment (only the database `roster_bench` on that server is
touched: dropped and recreated when seeding), else embedded PostgreSQL / Redis under /tmp/roster-bench.
The goal stated by the issue: p50 <= 15 ms and p99 <= 40 ms at 1M users on a 2-core machine. Figures only,
nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/users_page.py` puts bench/ first on the path, not the repo
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402

import embedded  # noqa: E402
from models.db import migrate, replace_database, tortoise_config  # noqa: E402

DATA_DIR = Path("/tmp/roster-bench")
DATABASE = "roster_bench"
PAGE_SIZE = 50
WALK_PAGES = 10
FILTER_TAG, FILTER_VALUE = "tier", "silver"  # ~40% of users; one group holds ~15%: a page filter matches ~6%
RARE_VALUE = "platinum"  # ~3% of users: with one group ~0.45%, for the depth table
SEED = 20261122

# --- synthetic data -------------------------------------------------------------------------------------------

_CN_GIVEN = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
             ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"),
             ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"), ("霞", "xia"), ("平", "ping"),
             ("刚", "gang"), ("桂英", "guiying"), ("子涵", "zihan"), ("浩然", "haoran"), ("欣怡", "xinyi")]
_CN_FAMILY = [("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
              ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
              ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("林", "lin")]
_WEST_GIVEN = ["Anna", "John", "Maria", "Lucas", "Emma", "Noah", "Olivia", "Liam", "Sofia", "Ravi", "Aisha",
               "Kenji", "Mateo", "Chloe", "David", "Sarah", "Tom", "Yuki", "Ivan", "Lena"]
_WEST_FAMILY = ["Smith", "Garcia", "Kumar", "Sato", "Silva", "Müller", "Okafor", "Nguyen", "Brown", "Rossi",
                "Dubois", "Kim", "Novak", "Jensen", "Lopez", "Taylor"]
# (first_name, last_name, display_name, nickname, email local part)
NAMES: list[tuple[str, str, str, str | None, str]] = (
    [(g, f, f + g, g if len(g) > 1 else None, f"{fp}.{gp}") for (f, fp) in _CN_FAMILY for (g, gp) in _CN_GIVEN]
    + [(g, f, f"{g} {f}", None, f"{g.lower()}.{f.lower().replace('ü', 'u')}")
       for g in _WEST_GIVEN for f in _WEST_FAMILY])
NAME_WEIGHTS = [3] * (len(_CN_FAMILY) * len(_CN_GIVEN)) + [1] * (len(_WEST_GIVEN) * len(_WEST_FAMILY))
# (city, country, language)
PLACES = [("Shanghai", "CN", "zh-CN"), ("Beijing", "CN", "zh-CN"), ("Shenzhen", "CN", "zh-CN"),
          ("Guangzhou", "CN", "zh-CN"), ("Hangzhou", "CN", "zh-CN"), ("Chengdu", "CN", "zh-CN"),
          ("Hong Kong", "HK", "zh-HK"), ("Taipei", "TW", "zh-TW"), ("Singapore", "SG", "en"),
          ("London", "GB", "en"), ("New York", "US", "en"), ("Tokyo", "JP", "ja"), (None, None, None)]
PLACE_WEIGHTS = [20, 18, 12, 10, 8, 7, 5, 3, 4, 3, 3, 2, 5]
GENDERS, GENDER_WEIGHTS = ["FEMALE", "MALE", "OTHER", "UNKNOWN", None], [44, 44, 1, 6, 5]
MEMBER_LEVELS, MEMBER_LEVEL_WEIGHTS = ["basic", "silver", "gold", "platinum", None], [50, 25, 12, 3, 10]
DOMAINS = ["example.com", "mail.example.cn", "example.org", "corp.example.net"]
STATUSES = [None] * 8 + ["Busy", "On holiday", "在忙", "Hello!"]
TIME_START = dt.datetime(2021, 1, 1, tzinfo=dt.UTC).timestamp()
TIME_SPAN = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp() - TIME_START

GROUP_COUNT = 20
# (key, name, type, allowed values)
TAGS = [("tier", "Customer tier", "TEXT", ["platinum", "gold", "silver", "bronze"]),
        ("interests", "Interests", "MULTI_VALUE",
         ["books", "food", "golf", "music", "sports", "tea", "travel", "wine"]),
        ("spend", "Total spend (CNY)", "NUMBER", []),
        ("vip", "VIP", "BOOLEAN", []),
        ("channel", "Acquisition channel", "TEXT", [])]
TIER_VALUES, TIER_WEIGHTS = [["platinum"], ["gold"], ["silver"], ["bronze"]], [3, 12, 40, 45]
INTEREST_SETS = [sorted(c) for k in (1, 2, 3) for c in itertools.combinations(TAGS[1][3], k)]
SPEND_VALUES = [[str(v)] for v in range(0, 20000, 7)] + [[f"{v}.5"] for v in range(0, 2000, 13)]
VIP_VALUES, VIP_WEIGHTS = [["true"], ["false"]], [1, 9]
CHANNEL_VALUES, CHANNEL_WEIGHTS = [["wechat"], ["store"], ["web"], ["ads"], ["referral"], ["event"]], [35, 20, 20,
                                                                                                       12, 8, 5]

USER_COLUMNS = ["id", "workspace_id", "username", "account_type", "display_name", "first_name", "last_name",
                "nickname", "gender", "birthday", "city", "country", "language", "avatar_url", "status_message",
                "member_level", "level", "role", "friend_verification", "friending_allowed", "message_settings",
                "primary_channel", "source", "initial_source", "locked_fields", "created_at", "updated_at",
                "last_activity_at"]
IDENTITY_COLUMNS = ["workspace_id", "user_id", "type", "channel", "value", "encryption", "source", "first_seen_at",
                    "last_seen_at"]
MEMBER_COLUMNS = ["workspace_id", "group_id", "user_id", "source", "added_at"]
USER_TAG_COLUMNS = ["workspace_id", "user_id", "tag_id", "values", "source", "locked", "updated_at"]
SEEDED_TABLES = ["users", "identities", "group_members", "user_tags"]


def phone(uid: int) -> str:
    """A unique China mobile number in E.164 (+86 13x xxxx xxxx); 7919 is coprime to 10^9."""
    return f"+86{13_000_000_000 + (uid * 7919) % 1_000_000_000}"


@dataclass
class Batch:
    users: list[tuple[Any, ...]]
    emails: list[str]


def user_batch(workspace_id: int, first_id: int, count: int, total: int) -> Batch:
    rng = random.Random(SEED * 1_000_003 + first_id)
    names = rng.choices(NAMES, NAME_WEIGHTS, k=count)
    places = rng.choices(PLACES, PLACE_WEIGHTS, k=count)
    genders = rng.choices(GENDERS, GENDER_WEIGHTS, k=count)
    levels = rng.choices(MEMBER_LEVELS, MEMBER_LEVEL_WEIGHTS, k=count)
    statuses = rng.choices(STATUSES, k=count)
    rnd = rng.random
    utc = dt.UTC
    fromts = dt.datetime.fromtimestamp
    birthday0 = dt.date(1950, 1, 1).toordinal()
    now = time.time()
    users, emails = [], []
    for k in range(count):
        uid = first_id + k
        first, last, display, nick, local = names[k]
        city, country, language = places[k]
        created_ts = TIME_START + TIME_SPAN * (uid / total) + (rnd() - 0.5) * 43200
        created = fromts(created_ts, utc)
        r = rnd()
        updated = fromts(min(created_ts + r * 60 * 86400, now), utc)
        active = fromts(min(created_ts + r * 400 * 86400, now), utc) if r < 0.7 else None
        users.append((
            uid, workspace_id, f"u{uid:07d}", "GENERAL", display, first, last, nick, genders[k],
            dt.date.fromordinal(birthday0 + int(r * 20000)) if r < 0.6 else None, city, country, language,
            f"https://cdn.example.com/avatars/{uid}.jpg" if r < 0.3 else None, statuses[k], levels[k],
            int(r * 60), None, "NEED_CONFIRM" if r < 0.2 else "ALLOW_ALL", r >= 0.05, "RECEIVE_ALL",
            "PHONE" if r < 0.5 else "SMS", "IMPORT" if r < 0.8 else "INTERNAL",
            "crm-export.csv" if r < 0.8 else None, "[]", created, updated, active))
        emails.append(f"{local}.{uid}@{DOMAINS[uid % len(DOMAINS)]}")
    return Batch(users, emails)


def identity_rows(workspace_id: int, batch: Batch) -> Iterator[tuple[Any, ...]]:
    for row, email in zip(batch.users, batch.emails, strict=True):
        uid, seen = row[0], row[25]
        source = row[23] or "api"
        yield (workspace_id, uid, "PHONE", "", phone(uid), "NONE", source, seen, seen)
        yield (workspace_id, uid, "EMAIL", "", email, "NONE", source, seen, seen)


def member_rows(workspace_id: int, batch: Batch, group_ids: list[int]) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(SEED * 7 + batch.users[0][0])
    combos = list(itertools.combinations(group_ids, 3))
    picks = rng.choices(combos, k=len(batch.users))
    for row, groups in zip(batch.users, picks, strict=True):
        for g in groups:
            yield (workspace_id, g, row[0], "IMPORT", row[25])


def user_tag_rows(workspace_id: int, batch: Batch, tag_ids: dict[str, int]) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(SEED * 13 + batch.users[0][0])
    n = len(batch.users)
    columns = [(tag_ids["tier"], rng.choices(TIER_VALUES, TIER_WEIGHTS, k=n)),
               (tag_ids["interests"], rng.choices(INTEREST_SETS, k=n)),
               (tag_ids["spend"], rng.choices(SPEND_VALUES, k=n)),
               (tag_ids["vip"], rng.choices(VIP_VALUES, VIP_WEIGHTS, k=n)),
               (tag_ids["channel"], rng.choices(CHANNEL_VALUES, CHANNEL_WEIGHTS, k=n))]
    for k, row in enumerate(batch.users):
        for tag_id, values in columns:
            yield (workspace_id, row[0], tag_id, values[k], "IMPORT", False, row[26])


# --- database ---------------------------------------------------------------------------------------------------


def marker(users: int) -> str:
    return f"roster-bench {users} users"


async def reusable(db_url: str, users: int) -> bool:
    try:
        conn = await asyncpg.connect(db_url)
    except (asyncpg.InvalidCatalogNameError, OSError):
        return False
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", marker(users))
        return ws is not None and await conn.fetchval(
            "SELECT count(*) FROM users WHERE workspace_id = $1", ws) == users
    except asyncpg.UndefinedTableError:
        return False
    finally:
        await conn.close()


async def recreate_database(server_url: str) -> str:
    conn = await asyncpg.connect(replace_database(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    finally:
        await conn.close()
    url = await embedded.ensure_database(server_url, DATABASE)
    await migrate(url)
    return url


async def _with_orm(db_url: str, work: Callable[[], Any]) -> Any:
    from tortoise import Tortoise

    await Tortoise.init(config=tortoise_config(db_url, pool_max=2))
    try:
        return await work()
    finally:
        await Tortoise.close_connections()


async def _drop_for_load(conn: asyncpg.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Drop the seeded tables' secondary (non-unique) indexes and foreign keys; return their definitions.

    The standard bulk-load recipe: COPY into bare tables, then build each index in one sort and check each
    foreign key with one join. Primary keys and unique constraints stay (they catch generator bugs).
    """
    indexes = [(r["name"], r["def"]) for r in await conn.fetch(
        "SELECT ci.relname AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i"
        " JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid"
        " WHERE ct.relname = ANY($1::text[]) AND NOT i.indisunique AND NOT i.indisprimary ORDER BY 1",
        SEEDED_TABLES)]
    fks = [(r["tbl"], r["conname"], r["def"]) for r in await conn.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, c.conname, pg_get_constraintdef(c.oid) AS def"
        " FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY($1::text[])"
        " ORDER BY 1, 2", SEEDED_TABLES)]
    for table, name, _ in fks:
        await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        await conn.execute(f'DROP INDEX "{name}"')
    return indexes, fks


async def seed(db_url: str, users: int, batch_size: int) -> None:
    from models.workspaces import create_workspace

    t0 = time.perf_counter()
    workspace = await _with_orm(db_url, lambda: create_workspace("roster-bench (seeding)", default_region="CN"))
    ws = workspace.id
    conns = [await asyncpg.connect(db_url) for _ in range(4)]
    main = conns[0]
    try:
        for c in conns:
            await c.execute("SET synchronous_commit = off")
        group_ids = [r["id"] for r in await main.fetch(
            "INSERT INTO groups (workspace_id, name, description, labels, source, created_by, created_at)"
            " SELECT $1, 'Audience ' || lpad(g::text, 2, '0'), 'Benchmark audience ' || g, '[\"bench\"]'::jsonb,"
            " 'IMPORT', 'bench', now() FROM generate_series(1, $2) g ORDER BY g RETURNING id", ws, GROUP_COUNT)]
        tag_ids = {}
        for key, name, type_, allowed in TAGS:
            tag_ids[key] = await main.fetchval(
                "INSERT INTO tags (workspace_id, key, name, type, allowed_values, created_at)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, now()) RETURNING id", ws, key, name, type_,
                orjson.dumps(allowed).decode())
        indexes, fks = await _drop_for_load(main)

        counts = dict.fromkeys(SEEDED_TABLES, 0)
        t_copy = time.perf_counter()
        for start in range(0, users, batch_size):
            count = min(batch_size, users - start)
            batch = user_batch(ws, start + 1, count, users)
            results = await asyncio.gather(
                conns[0].copy_records_to_table("users", records=batch.users, columns=USER_COLUMNS),
                conns[1].copy_records_to_table("identities", records=identity_rows(ws, batch),
                                               columns=IDENTITY_COLUMNS),
                conns[2].copy_records_to_table("group_members", records=member_rows(ws, batch, group_ids),
                                               columns=MEMBER_COLUMNS),
                conns[3].copy_records_to_table("user_tags", records=user_tag_rows(ws, batch, tag_ids),
                                               columns=USER_TAG_COLUMNS))
            for table, status in zip(SEEDED_TABLES, results, strict=True):
                counts[table] += int(status.split()[-1])
            done = start + count
            print(f"  copied {done:>9,} users  ({time.perf_counter() - t_copy:6.1f}s)", flush=True)
        t_copied = time.perf_counter()
        await main.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))")

        # Rebuild: indexes split over two connections (two cores), then the foreign keys.
        async def build(conn: asyncpg.Connection, defs: list[tuple[str, str]]) -> None:
            await conn.execute("SET maintenance_work_mem = '512MB'")
            for _, sql in defs:
                await conn.execute(sql)
        by_size = sorted(indexes, key=lambda d: ("gin" not in d[1], d[1]))
        await asyncio.gather(build(conns[0], by_size[0::2]), build(conns[1], by_size[1::2]))
        t_indexed = time.perf_counter()
        for table, name, definition in fks:
            await main.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        t_fk = time.perf_counter()
        await main.execute("VACUUM (ANALYZE) users, identities, group_members, user_tags, groups, tags")
        await main.execute("UPDATE workspaces SET name = $2 WHERE id = $1", ws, marker(users))
        t_end = time.perf_counter()
    finally:
        for c in conns:
            await c.close()
    rows = sum(counts.values())
    print(f"seeded {users:,} users = {rows:,} rows ({', '.join(f'{t} {n:,}' for t, n in counts.items())})")
    print(f"  COPY        {t_copied - t_copy:7.1f} s  {rows / (t_copied - t_copy):>10,.0f} rows/s"
          f"  {users / (t_copied - t_copy):>9,.0f} users/s")
    print(f"  indexes     {t_indexed - t_copied:7.1f} s  ({len(indexes)} rebuilt)")
    print(f"  foreign keys{t_fk - t_indexed:7.1f} s  ({len(fks)} re-added)")
    print(f"  vacuum/analyze {t_end - t_fk:4.1f} s")
    print(f"  total       {t_end - t0:7.1f} s  {rows / (t_end - t0):>10,.0f} rows/s overall")


@dataclass
class Fixture:
    workspace_id: int
    group_ids: list[int]
    tag_defs: dict[str, dict[str, Any]]
    token: str = ""


async def load_fixture(db_url: str, users: int) -> Fixture:
    from models.enums import Role
    from models.workspaces import create_api_key

    conn = await asyncpg.connect(db_url)
    try:
        ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", marker(users))
        if ws is None:
            raise SystemExit(f"database {DATABASE} holds no complete seed of {users:,} users")
        groups = [r["id"] for r in await conn.fetch(
            "SELECT id FROM groups WHERE workspace_id = $1 ORDER BY id", ws)]
        tag_defs = {r["key"]: {**dict(r), "allowed_values": orjson.loads(r["allowed_values"])}
                    for r in await conn.fetch("SELECT * FROM tags WHERE workspace_id = $1", ws)}
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1 AND name = 'bench'"
                           " AND revoked_at IS NULL", ws)
    finally:
        await conn.close()
    _, token = await _with_orm(db_url, lambda: create_api_key(ws, "bench", Role.ADMIN))
    return Fixture(ws, groups, tag_defs, token)


# --- the SQL the page issues (reconstructed from resolvers/users.py and resolvers/loaders.py) ------------------


def page_sql(fx: Fixture, group_id: int, after: tuple[str, int] | None, value: str = FILTER_VALUE
             ) -> tuple[str, list[Any]]:
    """The resolver's main statement for users(first: 50, filter, after) with the default order (ID DESC)."""
    from models.filters import ORDER_COLUMNS, SqlBuilder, TagCondition, UserFilterSpec, compile_filter

    spec = UserFilterSpec(group_ids=[group_id], tags=[TagCondition(FILTER_TAG, "IN", [value])])
    # As resolvers/users.py does for the ID order: the keyset bound also enters the filter's EXISTS.
    b = SqlBuilder(fx.workspace_id, ("<", after[1]) if after else None)
    compile_filter(spec, b, fx.tag_defs, "CN")
    expr = ORDER_COLUMNS["ID"]
    if after:
        b.where.append(f"u.id < {b.arg(after[1])}::bigint")
    sql = (f"SELECT u.*, ({expr})::text AS sort_key FROM users u WHERE {' AND '.join(b.where)}"
           f" ORDER BY {expr} DESC LIMIT {PAGE_SIZE + 1}")
    return sql, b.args


LOADER_SQL = {
    "identities": "SELECT * FROM identities WHERE workspace_id = $1 AND user_id = ANY($2::bigint[]) ORDER BY type, id",
    "groups": "SELECT gm.user_id, g.* FROM group_members gm JOIN groups g ON g.id = gm.group_id"
              " WHERE gm.workspace_id = $1 AND gm.user_id = ANY($2::bigint[]) ORDER BY g.name",
    "tags": "SELECT ut.user_id, ut.\"values\", ut.source, ut.locked, ut.updated_at, t.key, t.name, t.type"
            " FROM user_tags ut JOIN tags t ON t.id = ut.tag_id"
            " WHERE ut.workspace_id = $1 AND ut.user_id = ANY($2::bigint[]) ORDER BY t.key",
}
AUTH_SQL = ("SELECT id, name, role, permissions FROM api_keys WHERE workspace_id = $1 AND secret_hash = $2"
            " AND revoked_at IS NULL")


async def walk_sql(conn: asyncpg.Connection, fx: Fixture, group_id: int, pages: int, value: str = FILTER_VALUE
                   ) -> list[tuple[str, list[Any], list[int]]]:
    """Run the page statement for pages 1..pages; return (sql, args, user ids) of each page."""
    out, after = [], None
    for _ in range(pages):
        sql, args = page_sql(fx, group_id, after, value)
        rows = await conn.fetch(sql, *args)
        page = rows[:PAGE_SIZE]
        out.append((sql, args, [r["id"] for r in page]))
        if len(rows) <= PAGE_SIZE:
            break
        after = (page[-1]["sort_key"], page[-1]["id"])
    return out


def _literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).upper() if value is not None else "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return f"ARRAY[{', '.join(_literal(v) for v in value)}]"
    return "'" + str(value).replace("'", "''") + "'"


async def explain(db_url: str, fx: Fixture) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        settings = {r["name"]: r["setting"] + (r["unit"] or "") for r in await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            ["server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "jit",
             "max_parallel_workers_per_gather"])}
        print("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())))
        print(f"\npage statement by depth (ms, mean of 10 runs, one connection; keyset pages should cost the same"
              f" at any depth): group 1 AND {FILTER_TAG} IN [value]")
        for value in (FILTER_VALUE, RARE_VALUE):
            deep = await walk_sql(conn, fx, fx.group_ids[0], 200, value)
            cells = []
            for k in (1, 10, 50, 200):
                if k <= len(deep):
                    sql, args, _ = deep[k - 1]
                    t0 = time.perf_counter()
                    for _ in range(10):
                        await conn.fetch(sql, *args)
                    cells.append(f"page {k} {(time.perf_counter() - t0) * 100:7.2f}")
            print(f"  {value:<9} " + "   ".join(cells))
        pages = await walk_sql(conn, fx, fx.group_ids[0], WALK_PAGES)
        for n, (label, (sql, args, _)) in enumerate((("page 1", pages[0]), (f"page {len(pages)}", pages[-1]))):
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            print(f"\n--- EXPLAIN ANALYZE users {label} (custom plan: parameters known when planning)")
            if n == 0:
                print(sql)
                print("args:", args)
            print("\n".join(r[0] for r in plan))
            # A cached prepared statement (asyncpg's statement cache) may switch to a generic plan after 5 runs.
            await conn.execute(f"PREPARE bench_page_{n} AS {sql}")
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_page_{n}"
                                    f"({', '.join(_literal(a) for a in args)})")
            await conn.execute("RESET plan_cache_mode")
            print(f"\n--- EXPLAIN ANALYZE users {label} (generic plan, which a prepared statement may switch to)")
            print("\n".join(r[0] for r in plan))
        ids = pages[0][2]
        for name, sql in LOADER_SQL.items():
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, fx.workspace_id, ids)
            print(f"\n--- EXPLAIN ANALYZE loader {name} ({len(ids)} users)")
            print("\n".join(r[0] for r in plan))
    finally:
        await conn.close()


# --- HTTP load -------------------------------------------------------------------------------------------------

PAGE_QUERY = """query UsersPage($first: Int, $after: String, $filter: UserFilter) {
  users(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id username displayName firstName lastName gender memberLevel createdAt
      identities { type value source } groups { id name } tags { key values } } }
    pageInfo { hasNextPage endCursor } } }"""
VIEWER_QUERY = "{ viewer { role } }"


@dataclass
class Result:
    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)
    edges: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the phase, by whom

    def pct(self, q: float) -> float:
        s = sorted(self.latencies)
        return s[max(0, math.ceil(q * len(s)) - 1)] * 1000 if s else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else float("nan")

    def line(self) -> str:
        n = len(self.latencies)
        text = (f"{self.name:<22} c={self.concurrency:<2} n={n:<5} p50 {self.pct(.5):7.2f}  p95 {self.pct(.95):7.2f}"
                f"  p99 {self.pct(.99):7.2f}  max {self.pct(1):7.2f} ms  {self.rps:7.1f} req/s")
        if self.cpu and n:
            text += "  CPU ms/req: " + " ".join(
                f"{k} {self.cpu[k] / n * 1000:.1f}" for k in ("api", "pg") if k in self.cpu)
            others = self.cpu["machine"] - sum(v for k, v in self.cpu.items() if k != "machine")
            text += f"  (other processes: {max(0.0, others) / self.wall * 100:.0f}% of a core)"
        if self.edges:
            text += f"  ({self.edges / n:.0f} users/resp)"
        if self.errors:
            text += f"  ERRORS {len(self.errors)}: {self.errors[0][:200]}"
        return text


class CpuMeter:
    """CPU seconds of the API process, of this database's PostgreSQL backends (when the server runs here),
    of this process (the load generator), and of everything else on the machine (other work skews figures)."""

    def __init__(self, api_pids: list[int], pg_pid: int | None) -> None:
        import psutil

        self.psutil = psutil
        self.api = [psutil.Process(pid) for pid in api_pids]
        self.me = psutil.Process()
        self.pg = psutil.Process(pg_pid) if pg_pid else None

    @staticmethod
    def _cpu(p: Any) -> float:
        t = p.cpu_times()
        return t.user + t.system

    def _ours(self, p: Any) -> bool:
        words = " ".join(p.cmdline()).split()
        return len(words) > 2 and words[0] == "postgres:" and words[2] == DATABASE

    def sample(self) -> dict[str, float]:
        api = 0.0
        for p in self.api:
            try:
                api += self._cpu(p)
            except self.psutil.NoSuchProcess:
                pass
        out = {"api": api, "client": self._cpu(self.me)}
        if self.pg is not None:
            pg = 0.0
            for child in self.pg.children():
                try:
                    if self._ours(child):
                        pg += self._cpu(child)
                except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                    pass
            out["pg"] = pg
        t = self.psutil.cpu_times()
        out["machine"] = t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
        return out


async def run_phase(client: httpx.AsyncClient, name: str, total: int, concurrency: int,
                    body: Callable[[random.Random, str | None], dict[str, Any]], pages: int,
                    cpu: CpuMeter | None = None) -> Result:
    result = Result(name, concurrency)
    remaining = [total]

    async def worker(wid: int) -> None:
        rng = random.Random(SEED + wid)
        while remaining[0] > 0:
            after = None
            for _ in range(pages):
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
                payload = orjson.dumps(body(rng, after))
                t0 = time.perf_counter()
                response = await client.post("/graphql", content=payload)
                result.latencies.append(time.perf_counter() - t0)
                data = orjson.loads(response.content)
                if response.status_code != 200 or data.get("errors"):
                    result.errors.append(f"{response.status_code} {response.text}")
                    break
                users = data["data"].get("users")
                if users is None:
                    break
                result.edges += len(users["edges"])
                if not users["pageInfo"]["hasNextPage"]:
                    break
                after = users["pageInfo"]["endCursor"]

    before = cpu.sample() if cpu else None
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.wall = time.perf_counter() - t0
    if cpu and before:
        after_ = cpu.sample()
        result.cpu = {k: after_[k] - before[k] for k in before}
    return result


async def raw_sql_phase(db_url: str, fx: Fixture, total: int, token_hash: str) -> tuple[Result, Result, str]:
    """The page's main statement alone, and every statement one page request issues, over one connection
    (prepared and cached by asyncpg, as in the API's pool), sequentially."""
    conn = await asyncpg.connect(db_url)
    main, full = Result("raw SQL: page stmt", 1), Result("raw SQL: all stmts", 1)
    try:
        rng = random.Random(SEED)
        walks: list[list[tuple[str, list[Any], list[int]]]] = []
        for g in fx.group_ids[:4]:
            walks.append(await walk_sql(conn, fx, g, WALK_PAGES))
        steps = [p for w in walks for p in w]
        t_all = time.perf_counter()
        for i in range(total):
            sql, args, _ = steps[i % len(steps)]
            t0 = time.perf_counter()
            await conn.fetch(sql, *args)
            main.latencies.append(time.perf_counter() - t0)
        main.wall = time.perf_counter() - t_all
        t_all = time.perf_counter()
        for i in range(total):
            sql, args, ids = steps[rng.randrange(len(steps))]
            t0 = time.perf_counter()
            await conn.fetchrow(AUTH_SQL, fx.workspace_id, token_hash)
            await conn.fetch("SELECT * FROM tags WHERE workspace_id = $1", fx.workspace_id)
            await conn.fetch(sql, *args)
            for q in LOADER_SQL.values():  # the API runs these three concurrently on separate pool connections
                await conn.fetch(q, fx.workspace_id, ids)
            full.latencies.append(time.perf_counter() - t0)
        full.wall = time.perf_counter() - t_all
        plans = await conn.fetch(
            "SELECT generic_plans, custom_plans, left(statement, 60) AS s FROM pg_prepared_statements"
            " WHERE statement LIKE 'SELECT u.*%' ORDER BY statement")
        plan_use = "; ".join(f"{r['generic_plans']} generic / {r['custom_plans']} custom" for r in plans)
    finally:
        await conn.close()
    return main, full, plan_use


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_factory() -> Any:
    """uvicorn --factory target: the real app on the URLs the benchmark passes in the environment."""
    from app import create_app

    return create_app(os.environ["BENCH_DATABASE_URL"], os.environ["BENCH_REDIS_URL"])


# One process per worker, each with its own SO_REUSEPORT listener made with proto=IPPROTO_TCP. Not uvicorn's
# --workers: its supervisor binds the socket with proto 0, so asyncio never sets TCP_NODELAY on accepted
# connections and every keep-alive request waits ~40 ms on a delayed ACK (Kludex/uvicorn#3149).
_LAUNCHER = """
import socket, sys, uvicorn
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))  # uvicorn listens once the app's startup is done
config = uvicorn.Config("bench.users_page:api_factory", factory=True, log_level="warning", access_log=False)
uvicorn.Server(config).run(sockets=[sock])
"""


def start_api(db_url: str, redis_url: str, port: int, log: Path, workers: int) -> list[subprocess.Popen[bytes]]:
    """The API: `workers` uvicorn processes sharing the port; each builds the app under its own loop."""
    env = {**os.environ, "BENCH_DATABASE_URL": db_url, "BENCH_REDIS_URL": redis_url, "ENVIRONMENT": "production"}
    processes = []
    with log.open("wb") as out:
        for _ in range(workers):
            processes.append(subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(port)], cwd=ROOT, env=env,
                                              stdout=out, stderr=subprocess.STDOUT))
    return processes


async def wait_ready(port: int, processes: list[subprocess.Popen[bytes]], log: Path) -> None:
    """Every process listening, and /health answering."""
    import psutil

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for process in processes:
                if process.poll() is not None:
                    raise SystemExit(f"the API exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            listening = all(any(c.status == psutil.CONN_LISTEN for c in psutil.Process(p.pid).net_connections("tcp"))
                            for p in processes)
            try:
                if listening and (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the API did not become ready:\n{log.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def benchmark(args: argparse.Namespace, db_url: str, redis_url: str, fx: Fixture, pg_pid: int | None) -> None:
    from models.workspaces import _hash
    from schema.common import to_global_id

    port = args.port or free_port()
    log = DATA_DIR / f"api-{os.getpid()}.log"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    api = start_api(db_url, redis_url, port, log, args.workers)
    try:
        await wait_ready(port, api, log)
        cpu = None
        try:
            cpu = CpuMeter([p.pid for p in api], pg_pid)
        except Exception as exc:  # psutil missing or a process not visible: figures without CPU
            print(f"(no CPU figures: {exc})")
        groups = [to_global_id("Group", g) for g in fx.group_ids]

        def page(rng: random.Random, after: str | None) -> dict[str, Any]:
            return {"query": PAGE_QUERY, "variables": {
                "first": PAGE_SIZE, "after": after,
                "filter": {"groupIds": [rng.choice(groups)],
                           "tags": [{"key": FILTER_TAG, "op": "IN", "values": [FILTER_VALUE]}]}}}

        def viewer(rng: random.Random, after: str | None) -> dict[str, Any]:
            return {"query": VIEWER_QUERY}

        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        headers = {"authorization": f"Bearer {fx.token}", "content-type": "application/json"}
        sequential = max(50, args.requests // 4)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits,
                                     trust_env=False, timeout=60) as client:
            warm = await run_phase(client, "warm-up", max(100, args.requests // 10), args.concurrency, page,
                                   WALK_PAGES)
            await run_phase(client, "warm-up viewer", 100, args.concurrency, viewer, 1)
            if warm.errors:
                raise SystemExit(f"the users page fails: {warm.errors[0][:2000]}")
            print(f"\nwarm-up: {len(warm.latencies)} page requests, p50 {warm.pct(.5):.1f} ms\n")
            results = []
            for name, body, pages in (("floor: viewer", viewer, 1), ("users page", page, WALK_PAGES)):
                for c, n in ((1, sequential), (args.concurrency, args.requests)):
                    r = await run_phase(client, name, n, c, body, pages, cpu)
                    print(r.line(), flush=True)
                    results.append(r)
        raw_main, raw_full, plan_use = await raw_sql_phase(db_url, fx, sequential, _hash(fx.token))
        print(raw_main.line())
        print(raw_full.line())
        print(f"  (page statement on one pooled-style connection: {plan_use})")

        floor1, floorc, page1, pagec = results
        print("\nratios to the floor (users page / viewer):")
        for label, p, f in (("c=1", page1, floor1), (f"c={args.concurrency}", pagec, floorc)):
            print(f"  {label:<5} p50 x{p.pct(.5) / f.pct(.5):5.1f}  p95 x{p.pct(.95) / f.pct(.95):5.1f}"
                  f"  p99 x{p.pct(.99) / f.pct(.99):5.1f}  req/s x{p.rps / f.rps:5.2f}")
        print(f"  c=1   users page p50 vs its SQL (all statements, no HTTP/GraphQL): "
              f"{page1.pct(.5):.2f} ms vs {raw_full.pct(.5):.2f} ms")
        print(f"\nsummary @ {args.users:,} users, {os.cpu_count()} CPUs, {args.workers} API worker(s): "
              f"users page c={args.concurrency}: "
              f"p50 {pagec.pct(.5):.1f} ms, p95 {pagec.pct(.95):.1f} ms, p99 {pagec.pct(.99):.1f} ms, "
              f"{pagec.rps:.0f} req/s; c=1: p50 {page1.pct(.5):.1f} ms, p99 {page1.pct(.99):.1f} ms"
              f"  (goal: p50 <= 15 ms, p99 <= 40 ms)")
    finally:
        for process in api:
            stop_process(process)
        if log.exists() and log.stat().st_size == 0:  # uvicorn logs warnings and errors only
            log.unlink()


def resolve_servers() -> tuple[str, str, Callable[[], None], int | None]:
    """(server URL, redis URL, cleanup, postmaster pid or None)."""
    cleanups: list[Callable[[], None]] = []
    pg_pid = None
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        server_url = embedded.start_postgres(DATA_DIR)
        try:
            pg_pid = int((DATA_DIR / "pg" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pg_pid = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        # Per process: EmbeddedRedis kills whatever server its pid file names, e.g. another run's.
        server = embedded.EmbeddedRedis(DATA_DIR / f"redis-{os.getpid()}")
        redis_url = server.start()
        cleanups.append(server.stop)
        cleanups.append(lambda: shutil.rmtree(server.data_dir, ignore_errors=True))
    return server_url, redis_url, lambda: [c() for c in cleanups], pg_pid


async def prepare(args: argparse.Namespace, server_url: str) -> Fixture:
    db_url = replace_database(server_url, DATABASE)
    if args.keep and await reusable(db_url, args.users):
        print(f"reusing database {DATABASE} with {args.users:,} users (--keep)")
    else:
        db_url = await recreate_database(server_url)
        print(f"seeding {args.users:,} users into {DATABASE} (batches of {args.batch:,})", flush=True)
        await seed(db_url, args.users, args.batch)
    return await load_fixture(db_url, args.users)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="users to seed (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=2000, help="users-page requests at --concurrency")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database when its user count matches")
    parser.add_argument("--port", type=int, help="API port (default: a free one)")
    parser.add_argument("--batch", type=int, default=100_000, help="users per COPY batch")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the API (default 1)")
    parser.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN ANALYZE output")
    args = parser.parse_args()

    server_url, redis_url, cleanup, pg_pid = resolve_servers()
    try:
        fx = asyncio.run(prepare(args, server_url))
        db_url = replace_database(server_url, DATABASE)
        asyncio.run(benchmark(args, db_url, redis_url, fx, pg_pid))
        if not args.no_explain:
            asyncio.run(explain(db_url, fx))
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
