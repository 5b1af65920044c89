"""Real PostgreSQL and Redis for the suite: the environment's (DATABASE_URL / REDIS_URL) or embedded ones."""
from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import embedded
from app import create_app
from models import db
from models.enums import Role
from models.workspaces import create_api_key, create_workspace
from settings import Settings
from tests.processes import ROOT, ROSTER, free_port, roster_env, stop, wait_until_healthy

TEST_DATA = Path(tempfile.gettempdir()) / f"roster-test-{os.getuid()}"
TABLES = ["audit_log", "activities", "shared_activities", "deleted_parents", "user_tags", "group_members", "identities", "users", "groups", "tags",
          "tag_groups", "jobs", "files", "destinations", "api_keys", "workspaces"]


@pytest.fixture(scope="session")
def redis_url() -> Any:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = embedded.EmbeddedRedis(TEST_DATA / f"redis-{os.getpid()}")  # one per session: runs may overlap
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A fresh database with all migrations applied, dropped at the end."""
    server_url = os.environ.get("DATABASE_URL") or embedded.start_postgres(TEST_DATA)
    name = f"roster_test_{uuid.uuid4().hex[:8]}"
    url = await embedded.ensure_database(server_url, name)
    await db.migrate(url)
    yield url
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(environment="test")


@pytest.fixture(scope="session")
async def app(database_url: str, redis_url: str, settings: Settings) -> AsyncIterator[Any]:
    application = create_app(database_url, redis_url, settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster") as c:
        yield c


@pytest.fixture(autouse=True)
async def clean_tables(app: Any) -> AsyncIterator[None]:
    yield
    await db.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    await app.state.redis.flushdb()  # job ids restart with the tables; arq keeps results for an hour


async def work(redis_url: str) -> None:
    """Run the queued jobs in this process with a burst arq worker (returns when the queue is empty)."""
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    from jobs.runner import run_job

    worker = Worker(functions=[func(run_job, name="run_job")], redis_settings=RedisSettings.from_dsn(redis_url),
                    burst=True, handle_signals=False, poll_delay=0.05)
    try:
        await worker.main()
    finally:
        await worker.close()


class Api:
    """A GraphQL caller holding one API key."""

    def __init__(self, client: httpx.AsyncClient, token: str, workspace_id: int) -> None:
        self.client, self.token, self.workspace_id = client, token, workspace_id

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables or {}},
                                          headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        return response.json()

    async def __call__(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Run and return `data`, failing the test on any GraphQL error."""
        body = await self.raw(query, {**(variables or {}), **kw})
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def ok(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Run a mutation and return its payload, failing on userErrors."""
        data = await self(query, variables, **kw)
        (payload,) = data.values()
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload


async def make_workspace(client: httpx.AsyncClient, role: Role = Role.ADMIN, name: str = "Acme",
                         permissions: list[str] | None = None, region: str = "CN") -> Api:
    workspace = await create_workspace(name, default_region=region)
    _, token = await create_api_key(workspace.id, f"{role.value.lower()} key", role, permissions)
    return Api(client, token, workspace.id)


async def other_key(api: Api, role: Role, permissions: list[str] | None = None) -> Api:
    _, token = await create_api_key(api.workspace_id, f"{role.value.lower()} key", role, permissions)
    return Api(api.client, token, api.workspace_id)


@pytest.fixture
async def api(client: httpx.AsyncClient) -> Api:
    return await make_workspace(client)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement sent through asyncpg while the test runs."""
    seen: list[str] = []
    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
        original = getattr(asyncpg.connection.Connection, name)

        def counting(self: Any, query: str, *args: Any, __original: Any = original, **kw: Any) -> Any:
            seen.append(query)
            return __original(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.connection.Connection, name, counting)
    yield seen


@pytest.fixture
async def served(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """`roster serve` on a free loopback port; yields its base URL."""
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*ROSTER, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                                env=roster_env(database_url, redis_url, tmp_path), stdout=out, stderr=subprocess.STDOUT)
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert stop(proc) == 0, log.read_text()  # uvicorn shuts down cleanly on SIGTERM


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tansu broker (Kafka protocol, in memory) on a free loopback port for the session."""
    from tests.brokers import Tansu

    broker = Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker.start()
    broker.stop()
