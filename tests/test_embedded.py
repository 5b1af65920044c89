"""`roster dev` on the zero-install default: embedded PostgreSQL + Redis, API and worker, clean Ctrl-C.

Runs in a fresh data folder under /tmp (embedded PostgreSQL, as root, opens up every parent of its
data folder: never point it into /root or a home folder). Takes a few seconds (initdb).
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from arq import create_pool
from arq.connections import RedisSettings

import embedded
from tests.processes import ROOT, ROSTER, free_port, wait_until_healthy


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="roster-dev-", dir="/tmp"))
    yield path / "data"
    embedded.stop_postgres(path / "data")  # in case the test failed before `roster dev` stopped it
    shutil.rmtree(path, ignore_errors=True)


def printed(log: Path, pattern: str) -> str:
    match = re.search(pattern, log.read_text(), re.MULTILINE)
    assert match, log.read_text()
    return match.group(1)


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: in a container, PID 1 may never reap orphans)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_roster_dev_runs_api_and_worker_on_embedded_servers(app: Any, data_dir: Path) -> None:
    port, log = free_port(), data_dir.parent / "dev.log"
    # A clean shell: no server URLs (and not the suite's embedded runtime dir, which conftest exported).
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR")}
    env |= {"DATA_DIR": str(data_dir), "HOST": "127.0.0.1", "PORT": str(port), "ENVIRONMENT": "test"}
    with log.open("wb") as out:
        # Own session: Ctrl-C in a terminal signals the whole process group (API and worker child).
        proc = subprocess.Popen([*ROSTER, "dev"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}", proc, log, limit=30)
        token = printed(log, r"^\s+(rk_\S+)$")
        assert printed(log, r"^GraphiQL: (\S+)") == f"http://127.0.0.1:{port}/graphql"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            response = await http.post("/graphql", json={"query": "{ viewer { workspace { name } role } }"},
                                       headers={"Authorization": f"Bearer {token}"})
        assert response.json() == {"data": {"viewer": {"workspace": {"name": "Default"}, "role": "ADMIN"}}}

        # The worker child serves the embedded Redis that `roster dev` printed.
        redis = await create_pool(RedisSettings.from_dsn(printed(log, r"^Redis:\s+(\S+)")))
        try:
            job = await redis.enqueue_job("purge_expired_files")
            assert job is not None and await job.result(timeout=20, poll_delay=0.1) == 0, log.read_text()
        finally:
            await redis.aclose()
        redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()  # uvicorn swallows the re-raised Ctrl-C after its clean shutdown
    assert "Application shutdown complete" in log.read_text() and "shutdown on SIGINT" in log.read_text()
    for _ in range(50):  # redis-server exits shortly after its SHUTDOWN reply
        if not alive(redis_pid):
            break
        await asyncio.sleep(0.1)
    assert not alive(redis_pid)
    assert not (data_dir / "pg" / "postmaster.pid").exists()  # PostgreSQL stopped with its last user


async def test_embedded_postgres_is_tuned_for_bulk_writes(database_url: str) -> None:
    """The embedded server runs with embedded.TUNING (bigger buffers, rarer checkpoints), restart included."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the environment's PostgreSQL is configured by its owner")
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        for name in ("shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression"):
            assert await conn.fetchval(f"SELECT current_setting('{name}')") == embedded.TUNING[name], name
    finally:
        await conn.close()
