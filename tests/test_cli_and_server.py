"""The `roster` command and the processes it runs: a real uvicorn server, the admin commands, the arq worker.

The uvicorn test matters: Tortoise 1.x keeps ORM state per task context, which httpx's ASGITransport
(used everywhere else) does not exercise.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from jobs.worker import CRON_JOBS, WorkerSettings, purge_expired_files, worker_settings
from models import db
from models.enums import Role
from models.jobs import File
from models.workspaces import Workspace, create_api_key, create_workspace
from tests.conftest import Api
from tests.processes import ROOT, ROSTER, roster_env, stop

async def roster(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one `roster ...` command to completion without blocking the suite's event loop."""
    proc = await asyncio.create_subprocess_exec(*ROSTER, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()



async def test_roster_serve_answers_graphql_under_real_uvicorn(app: Any, served: str) -> None:
    workspace = await create_workspace("Served", default_region="CN")
    _, token = await create_api_key(workspace.id, "admin", Role.ADMIN)
    query = {"query": "{ viewer { workspace { name } role } }"}
    async with httpx.AsyncClient(base_url=served, timeout=10) as http:
        response = await http.post("/graphql", json=query, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"viewer": {"workspace": {"name": "Served"}, "role": "ADMIN"}}}

        anonymous = await http.post("/graphql", json=query)
        assert anonymous.status_code == 401
        wrong = await http.post("/graphql", json=query, headers={"Authorization": f"Bearer {token}x"})
        assert wrong.status_code == 401


async def test_apikey_create_prints_a_working_token(app: Any, client: httpx.AsyncClient, database_url: str,
                                                    redis_url: str, tmp_path: Path) -> None:
    env = roster_env(database_url, redis_url, tmp_path)
    code, out, err = await roster("workspace", "create", "--name", "From CLI", "--region", "cn", env=env)
    assert code == 0, err
    workspace = await Workspace.get(id=int(out.strip()))
    assert (workspace.name, workspace.default_region) == ("From CLI", "CN")

    code, out, err = await roster("apikey", "create", "--workspace", str(workspace.id), "--role", "partner",
                                  "--name", "crm sync", "--permission", "identity:PHONE:read",
                                  "--permission", "tag:vip:read", env=env)
    assert code == 0, err
    token = out.strip()
    assert token.startswith(f"rk_{workspace.id}_") and "\n" not in token

    viewer = (await Api(client, token, workspace.id)("{ viewer { workspace { name } role apiKeyName permissions } }"))[
        "viewer"]
    assert viewer["workspace"]["name"] == "From CLI"
    assert (viewer["role"], viewer["apiKeyName"]) == ("PARTNER", "crm sync")
    assert {"identity:PHONE:read", "tag:vip:read"} <= set(viewer["permissions"])


async def test_apikey_create_rejects_unknown_workspace_and_role(app: Any, database_url: str, redis_url: str,
                                                                tmp_path: Path) -> None:
    env = roster_env(database_url, redis_url, tmp_path)
    code, out, err = await roster("apikey", "create", "--workspace", "999999", "--role", "ADMIN", "--name", "x",
                                  env=env)
    assert (code, out) == (1, "") and "no workspace" in err
    code, _, err = await roster("apikey", "create", "--workspace", "1", "--role", "ROOT", "--name", "x", env=env)
    assert code == 2 and "invalid choice" in err


# --- the worker -----------------------------------------------------------------------------


async def expiring_files(root: Path) -> dict[str, File]:
    """Files rows, with bytes on disk for most: two expired, one not yet, one that never expires."""
    workspace = await create_workspace("Files")
    now = datetime.now(timezone.utc)
    rows = {"expired": ("exports/old.csv", now - timedelta(hours=1)),
            "expired_missing": ("exports/gone.csv", now - timedelta(minutes=1)),  # bytes already deleted
            "fresh": ("exports/new.csv", now + timedelta(hours=1)),
            "forever": ("uploads/keep.csv", None)}
    files = {}
    for label, (key, expires_at) in rows.items():
        files[label] = await File.create(workspace_id=workspace.id, kind="EXPORT", storage_key=key, name=key,
                                         expires_at=expires_at)
        if label != "expired_missing":
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_text("a,b\n")
    return files


async def assert_purged(files: dict[str, File], root: Path) -> None:
    remaining = set(await File.all().values_list("id", flat=True))
    assert remaining == {files["fresh"].id, files["forever"].id}
    assert not (root / "exports/old.csv").exists()
    assert (root / "exports/new.csv").exists() and (root / "uploads/keep.csv").exists()


def other_redis_db(redis_url: str, db: int) -> str:
    """The same server, another database: an isolated arq queue (no stray jobs from other tests)."""
    parts = urlsplit(redis_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"db": str(db)}
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


async def test_worker_purges_expired_files(app: Any, database_url: str, redis_url: str, tmp_path: Path) -> None:
    files = await expiring_files(tmp_path / "files")
    queue = f"arq:test:{tmp_path.name}"
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        job = await redis.enqueue_job("purge_expired_files", _queue_name=queue)
        assert job is not None
        # No cron here: the hourly run must not sneak into a test that happens at hh:00.
        worker = Worker(**{**worker_settings(database_url, redis_url, tmp_path), "cron_jobs": None},
                        queue_name=queue, burst=True, handle_signals=False, poll_delay=0.05)
        try:
            assert await worker.run_check() == 1
        finally:
            await worker.close()
        assert await job.result(timeout=5) == 2
    finally:
        await redis.aclose()
    # The worker borrowed the suite's Tortoise context (startup found it active): still usable here.
    await assert_purged(files, tmp_path / "files")


async def test_purge_is_registered_hourly_and_refuses_keys_outside_the_folder(app: Any, tmp_path: Path) -> None:
    assert purge_expired_files in WorkerSettings.functions
    (hourly,) = [c for c in CRON_JOBS if c.coroutine is purge_expired_files]
    assert (hourly.minute, hourly.second) == (0, 0)

    workspace = await create_workspace("Traversal")
    outside = tmp_path / "secret.txt"
    outside.write_text("keep me")
    await File.create(workspace_id=workspace.id, kind="EXPORT", storage_key="../secret.txt", name="x",
                      expires_at=datetime.now(timezone.utc) - timedelta(hours=1))
    assert await purge_expired_files({"data_dir": tmp_path}) == 1
    assert outside.exists()


async def test_roster_worker_process_runs_jobs_and_stops_on_sigterm(app: Any, database_url: str, redis_url: str,
                                                                    tmp_path: Path) -> None:
    files = await expiring_files(tmp_path / "files")
    isolated = other_redis_db(redis_url, 7)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*ROSTER, "worker"], cwd=ROOT, env=roster_env(database_url, isolated, tmp_path),
                                stdout=out, stderr=subprocess.STDOUT)
    redis = await create_pool(RedisSettings.from_dsn(isolated))
    try:
        job = await redis.enqueue_job("purge_expired_files")
        assert job is not None
        assert await job.result(timeout=20, poll_delay=0.1) == 2, log.read_text()
    finally:
        await redis.aclose()
        code = stop(proc)
    assert code == 0, log.read_text()
    await assert_purged(files, tmp_path / "files")


async def test_roster_worker_needs_a_shared_redis(app: Any, database_url: str, tmp_path: Path) -> None:
    code, _, err = await roster("worker", env=roster_env(database_url, "", tmp_path))
    assert code == 2 and "REDIS_URL" in err


async def test_roster_migrate_is_idempotent(app: Any, database_url: str, redis_url: str, tmp_path: Path) -> None:
    code, out, err = await roster("migrate", env=roster_env(database_url, redis_url, tmp_path))
    assert (code, out.strip()) == (0, "migrations applied"), err


async def test_roster_import_loads_a_file_with_progress_and_reports_counts(
        app: Any, database_url: str, redis_url: str, tmp_path: Path) -> None:
    workspace = await create_workspace("Cli import", default_region="CN")
    await db.execute("INSERT INTO groups (workspace_id, name, labels, source) VALUES ($1, 'Leads', '[]', 'MANUAL')",
                     workspace.id)
    path = tmp_path / "people.csv"
    path.write_text("name,phone,city\nLi,13011110001,Beijing\nBad,12,\nSam,+14155552671,NYC\n", encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")}
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run([*ROSTER, "import", str(path), "--workspace", str(workspace.id), "--group", "Leads",
                           "--map", "name=NAME,phone=IDENTITY:PHONE,city=PROFILE:city"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "created 2" in done.stdout and "failed 1" in done.stdout
    assert "100.0%" in done.stderr  # the progress bar reached the end
    rows = await db.fetch("SELECT u.display_name, u.city FROM users u JOIN group_members m ON m.user_id = u.id"
                          " WHERE u.workspace_id = $1 ORDER BY u.id", workspace.id)
    assert [(r["display_name"], r["city"]) for r in rows] == [("Li", "Beijing"), ("Sam", "NYC")]
    refused = subprocess.run([*ROSTER, "import", str(path), "--workspace", str(workspace.id)],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "GROUP_REQUIRED" in refused.stderr
