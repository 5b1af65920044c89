"""A worker killed (SIGKILL) mid-push: the retried job resumes after its last acknowledged batch, every
member reaches the topic at least once (delivery is at least once), and nobody else does."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from models import db
from schema.common import from_global_id, to_global_id
from tests import factories as f
from tests.conftest import Api
from tests.test_import_resume import job_state, wait_for
from tests.test_pushes import consume, job, kafka_destination, push

USERS, BATCH = 5_500, 50  # every 11th user is not a member: 5000 members, 100 batches


def start_worker(database_url: str, redis_url: str, settings: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(settings.data_dir),
           "PUSH_BATCH_SIZE": str(BATCH), "JOB_STALE_AFTER_S": "1"}
    env.pop("XDG_RUNTIME_DIR", None)
    roster = Path(sys.executable).with_name("roster")
    return subprocess.Popen([str(roster), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def seed_audience(api: Api) -> tuple[str, list[str], list[str]]:
    """A group of members and a second group of non-members, their user ids interleaved; set-based SQL."""
    group, others = await f.group(api, "Audience"), await f.group(api, "Not pushed")
    user_ids = [r["id"] for r in await db.fetch(
        "INSERT INTO users (workspace_id, username, account_type, display_name, source, locked_fields,"
        " created_at, updated_at)"
        " SELECT $1, 'resume' || g, 'GENERAL', 'Contact ' || g, 'IMPORT', '[]', now(), now()"
        " FROM generate_series(1, $2) g ORDER BY g RETURNING id", api.workspace_id, USERS)]
    assert len(user_ids) == USERS
    user_ids.sort()
    members = [uid for i, uid in enumerate(user_ids) if i % 11]
    non_members = [uid for i, uid in enumerate(user_ids) if not i % 11]
    for group_id, ids in ((group["id"], members), (others["id"], non_members)):
        await db.execute(
            "INSERT INTO group_members (workspace_id, group_id, user_id, source, added_at)"
            " SELECT $1, $2, u, 'MANUAL', now() FROM unnest($3::bigint[]) u",
            api.workspace_id, from_global_id(group_id)[1], ids)
    return (group["id"], [to_global_id("User", uid) for uid in members],
            [to_global_id("User", uid) for uid in non_members])


async def test_killed_worker_resumes_a_kafka_push_after_the_last_acknowledged_batch(
        api: Api, client: httpx.AsyncClient, database_url: str, redis_url: str, settings: Any,
        kafka_bootstrap: str) -> None:
    group_id, members, non_members = await seed_audience(api)
    assert len(members) == 5_000
    topic = f"audiences-{uuid.uuid4().hex[:8]}"
    destination = await kafka_destination(api, kafka_bootstrap, topic)
    started = await push(api, group_id, destination["id"])
    assert started["userErrors"] == [], started
    job_id = started["job"]["id"]
    job_pk = from_global_id(job_id)[1]

    first = start_worker(database_url, redis_url, settings)
    try:
        await wait_for(job_pk, lambda r: r["progress_done"] > 0)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    at_kill = await job_state(job_pk)
    assert at_kill["status"] == "RUNNING" and 0 < at_kill["progress_done"] < len(members)  # really mid-push
    await asyncio.sleep(2.5)  # heartbeat stale (JOB_STALE_AFTER_S=1): the next worker recovers it at startup
    second = start_worker(database_url, redis_url, settings)
    try:
        finished = await wait_for(job_pk, lambda r: r["status"] in ("SUCCEEDED", "FAILED"))
    finally:
        second.terminate()
        second.wait()
    assert finished["status"] == "SUCCEEDED", dict(finished)
    assert await db.fetchval("SELECT attempts FROM jobs WHERE id = $1", job_pk) == 2

    done = await job(api, job_id)
    assert done["status"] == "SUCCEEDED", done
    assert done["counts"] == {"users": len(members), "messages": len(members)}
    assert done["progress"] == {"done": len(members), "total": len(members)}

    messages = await consume(kafka_bootstrap, topic, len(members), timeout=60.0)
    keys = Counter(m.key.decode() for m in messages)
    assert len(messages) >= len(members)
    assert set(members) <= set(keys), f"{len(set(members) - set(keys))} members never sent"
    assert not set(keys) & set(non_members)
    assert set(keys) == set(members)
