"""A worker killed (SIGKILL) mid-import: the retried job resumes at its checkpoint, and the result equals
an uninterrupted run of the same file, row for row."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.contacts_csv import generate
from models import db
from models.enums import Role
from schema.common import from_global_id
from tests import factories as f
from tests.conftest import Api, make_workspace
from tests.test_imports import upload

ROWS, BATCH = 12_000, 200
MAPPING = [{"column": 0, "target": "NAME"}, {"column": 1, "target": "IDENTITY", "identityType": "PHONE"},
           {"column": 2, "target": "REGION"}, {"column": 3, "target": "IDENTITY", "identityType": "EMAIL"},
           {"column": 4, "target": "TAG", "tagKey": "tier"}, {"column": 5, "target": "TAG", "tagKey": "interests"},
           {"column": 6, "target": "GROUP"}]


def start_worker(database_url: str, redis_url: str, settings: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(settings.data_dir),
           "IMPORT_BATCH_SIZE": str(BATCH), "JOB_STALE_AFTER_S": "1"}
    env.pop("XDG_RUNTIME_DIR", None)
    roster = Path(sys.executable).with_name("roster")
    return subprocess.Popen([str(roster), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def job_state(job_pk: int) -> Any:
    return await db.fetchrow("SELECT status, progress_done, counts FROM jobs WHERE id = $1", job_pk)


async def wait_for(job_pk: int, predicate: Any, seconds: float = 90) -> Any:
    for _ in range(int(seconds / 0.01)):
        row = await job_state(job_pk)
        if predicate(row):
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_pk} never reached the state: {dict(row)}")


async def import_file(client: httpx.AsyncClient, api: Api, path: Path) -> int:
    await f.tag(api, "tier")
    await f.tag(api, "interests", "MULTI_VALUE", ["golf", "tea", "wine", "travel", "music"])
    group = await f.group(api, "Base")
    upload_id = await upload(client, api, path.read_text(encoding="utf-8"), "contacts.csv")
    result = (await api("mutation($i: ImportStartInput!) { importStart(input: $i) { job { id } userErrors { code } } }",
                        i={"uploadId": upload_id, "mapping": MAPPING, "groupIds": [group["id"]]}))["importStart"]
    assert result["userErrors"] == []
    return from_global_id(result["job"]["id"])[1]


async def snapshot(workspace_id: int) -> dict[str, Any]:
    """Everything an import writes, keyed by identity values (ids differ between workspaces)."""
    users = await db.fetch(
        "SELECT u.display_name, u.initial_source,"
        " (SELECT array_agg(type || ':' || value ORDER BY type, value) FROM identities i"
        "   WHERE i.workspace_id = $1 AND i.user_id = u.id) ids,"
        " (SELECT array_agg(g.name ORDER BY g.name) FROM group_members m JOIN groups g ON g.id = m.group_id"
        "   WHERE m.workspace_id = $1 AND m.user_id = u.id) groups,"
        " (SELECT array_agg(t.key || '=' || array_to_string(ut.\"values\", '|') ORDER BY t.key)"
        "   FROM user_tags ut JOIN tags t ON t.id = ut.tag_id WHERE ut.workspace_id = $1 AND ut.user_id = u.id) tags"
        " FROM users u WHERE u.workspace_id = $1", workspace_id)
    return {tuple(r["ids"]): (r["display_name"], r["initial_source"], r["groups"], r["tags"]) for r in users}


async def test_killed_worker_resumes_from_checkpoint_with_nothing_lost_or_doubled(
        client: httpx.AsyncClient, api: Api, database_url: str, redis_url: str, settings: Any) -> None:
    path = Path(tempfile.mkdtemp()) / "contacts.csv"
    generate(path, ROWS)

    # Uninterrupted run, in its own workspace.
    steady = await make_workspace(client, Role.ADMIN, name="Steady")
    steady_job = await import_file(client, steady, path)
    worker = start_worker(database_url, redis_url, settings)
    try:
        done = await wait_for(steady_job, lambda r: r["status"] in ("SUCCEEDED", "FAILED"))
    finally:
        worker.kill()
        worker.wait()
    assert done["status"] == "SUCCEEDED"

    # The same file, with the worker killed mid-way and a new worker taking over.
    crashed_job = await import_file(client, api, path)
    first = start_worker(database_url, redis_url, settings)
    try:
        at_kill = await wait_for(crashed_job, lambda r: r["progress_done"] >= 8 * BATCH)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    at_kill = await job_state(crashed_job)
    assert at_kill["status"] == "RUNNING" and 0 < at_kill["progress_done"] < ROWS  # really mid-import
    await asyncio.sleep(2.5)  # heartbeat stale (JOB_STALE_AFTER_S=1): the next worker recovers it at startup
    second = start_worker(database_url, redis_url, settings)
    try:
        finished = await wait_for(crashed_job, lambda r: r["status"] in ("SUCCEEDED", "FAILED"))
    finally:
        second.terminate()
        second.wait()
    assert finished["status"] == "SUCCEEDED"
    attempts = await db.fetchval("SELECT attempts FROM jobs WHERE id = $1", crashed_job)
    assert attempts == 2

    assert db.json_value(finished["counts"]) == db.json_value(done["counts"])
    assert db.json_value(finished["counts"])["rows"] == ROWS
    assert await snapshot(api.workspace_id) == await snapshot(steady.workspace_id)
    for table in ("users", "identities", "group_members", "user_tags"):
        a = await db.fetchval(f"SELECT count(*) FROM {table} WHERE workspace_id = $1", api.workspace_id)
        b = await db.fetchval(f"SELECT count(*) FROM {table} WHERE workspace_id = $1", steady.workspace_id)
        assert a == b, table
