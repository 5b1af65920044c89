"""Database plumbing: Tortoise config from a URL, and thin raw-SQL helpers for the hot paths.

The ORM serves simple CRUD; list pages, loaders and bulk paths use asyncpg directly through
Tortoise's pool so that one request costs a handful of statements.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import asyncpg
from tortoise import connections

MODEL_MODULES = [
    "models.users",
    "models.identities",
    "models.groups",
    "models.tags",
    "models.activities",
    "models.jobs",
    "models.destinations",
    "models.workspaces",
]


def replace_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _keep_session(_: asyncpg.Connection) -> None:
    return None


def tortoise_config(database_url: str, pool_max: int = 10) -> dict[str, Any]:
    """Tortoise config for a postgres URL; supports unix sockets given as ?host=/dir."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    credentials = {
        "host": host,
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or "postgres",
        "minsize": 1,
        "maxsize": pool_max,
        # asyncpg's default reset costs a round trip on every release; we never leave session state
        # (LISTEN, advisory locks, cursors) on pooled connections, so releasing is free.
        "reset": _keep_session,
    }
    return {
        "connections": {"default": {"engine": "tortoise.backends.asyncpg", "credentials": credentials}},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default", "migrations": "migrations"}},
        "use_tz": True,
        "timezone": "UTC",
    }


@asynccontextmanager
async def connection(conn: Any = None) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection: the given one (inside a transaction) or one from the pool."""
    if isinstance(conn, asyncpg.Connection):
        yield conn
        return
    client = conn or connections.get("default")
    async with client.acquire_connection() as raw:
        yield raw


@asynccontextmanager
async def dedicated_connection() -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, outside the pool, for work that holds several for long (an export's snapshot):
    concurrent jobs then cannot exhaust the pool and wait on each other's connections."""
    client: Any = connections.get("default")
    conn = await asyncpg.connect(host=client.host, port=client.port, user=client.user, password=client.password,
                                 database=client.database)
    try:
        yield conn
    finally:
        await conn.close()


async def fetch(sql: str, *args: Any, conn: Any = None) -> list[asyncpg.Record]:
    async with connection(conn) as c:
        return await c.fetch(sql, *args)


async def fetchrow(sql: str, *args: Any, conn: Any = None) -> asyncpg.Record | None:
    async with connection(conn) as c:
        return await c.fetchrow(sql, *args)


async def fetchval(sql: str, *args: Any, conn: Any = None) -> Any:
    async with connection(conn) as c:
        return await c.fetchval(sql, *args)


async def execute(sql: str, *args: Any, conn: Any = None) -> str:
    async with connection(conn) as c:
        return await c.execute(sql, *args)


ON_CONFLICT = "/* on conflict */"


async def fetchrow_skipping_existing(conn: asyncpg.Connection, sql: str, args: Sequence[Any],
                                     on_conflict: str) -> asyncpg.Record | None:
    """Run `sql`, whose INSERTs leave out existing keys by an anti-join, under a savepoint. When a concurrent
    writer committed one of the same keys meanwhile, run it again with `on_conflict` at ON_CONFLICT.

    An anti-join also reads a row another transaction is deleting as still there: callers serialise the
    batches that insert and delete the same rows (an advisory lock), or a removal could win over an insert.

    `ON CONFLICT` costs a speculative insertion per row: 1M group memberships took 7.8 s with it, 3.2 s without.
    """
    try:
        async with conn.transaction():
            return await conn.fetchrow(sql, *args)
    except asyncpg.UniqueViolationError:
        return await conn.fetchrow(sql.replace(ON_CONFLICT, on_conflict), *args)


def ids(values: Sequence[int]) -> list[int]:
    return [int(v) for v in values]


# For the `tortoise` CLI (makemigrations / sqlmigrate): `tortoise -c models.db.TORTOISE_ORM ...`.
TORTOISE_ORM = tortoise_config("postgres://postgres@localhost/roster")


async def migrate(database_url: str) -> None:
    """Apply all migrations (Tortoise's built-in migration engine) and close the connections."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate as run_migrations

    await run_migrations(config=tortoise_config(database_url, pool_max=2))
    await Tortoise.close_connections()


def json_value(value: Any) -> Any:
    """jsonb arrives from asyncpg as text unless a codec is set; decode it once here."""
    import orjson

    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


@asynccontextmanager
async def transaction() -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection inside a Tortoise transaction (rolled back on any exception).

    Inside it, pass this connection to every query: Tortoise routes the "default" connection of the
    current task to the transaction, so a pool query without `conn=` would wait on it forever.
    """
    from tortoise.transactions import in_transaction

    async with in_transaction() as tx:
        async with tx.acquire_connection() as raw:
            yield raw
