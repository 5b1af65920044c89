"""Planning the next batch while the current one is written (jobs.imports.PLAN_AHEAD) changes nothing a user
sees: the same file, in batches that share people with earlier ones (repeats, joins, merges, usernames),
imports to the same contacts, counts and error report as batches planned one after the other."""
from __future__ import annotations

import asyncio
import csv
import io
import random
from typing import Any

import asyncpg
import httpx
import pytest

from jobs.import_plan import plan_ahead
from jobs.imports import ImportParams, batch_context, write_batch, write_planned
from models import db
from models.import_rows import ColumnRule, RowSpec, parse_row
from settings import get_settings
from tests import factories as f
from tests.conftest import Api, make_workspace, work
from tests.test_contacts_upsert import UPSERT
from tests.test_imports import JOB, start, upload
from tests.test_users import IDENTITY_ADD

MAPPING = [{"column": 0, "target": "NAME"}, {"column": 1, "target": "USERNAME"},
           {"column": 2, "target": "IDENTITY", "identityType": "PHONE"},
           {"column": 3, "target": "IDENTITY", "identityType": "EMAIL"},
           {"column": 4, "target": "TAG", "tagKey": "tier"}, {"column": 5, "target": "GROUP"}]


def contacts_file(rows: int, seed: int) -> str:
    """People drawn from a small pool, so rows repeat, join and merge people of earlier batches."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "username", "phone", "email", "tier", "group"])
    for i in range(rows):
        phone = f"1301111{rng.randrange(60):04d}" if rng.random() < 0.8 else ""
        email = f"p{rng.randrange(60)}@example.com" if rng.random() < 0.6 else ""
        if rng.random() < 0.03:
            phone = "12345"  # invalid: a row of the error report
        username = f"user{rng.randrange(40)}" if rng.random() < 0.1 else ""
        writer.writerow([f"Name {i}", username, phone, email, rng.choice(["gold", "silver", ""]),
                         rng.choice(["", "A", "B", "A,B"])])
    return out.getvalue()


async def snapshot(api: Api) -> list[Any]:
    people = []
    for row in await db.fetch(
            "SELECT u.display_name, u.username, u.source,"
            " ARRAY(SELECT i.value FROM identities i WHERE i.user_id = u.id ORDER BY i.value) AS identities,"
            " ARRAY(SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id"
            "       WHERE m.user_id = u.id ORDER BY g.name) AS groups,"
            " ARRAY(SELECT array_to_string(t.\"values\", ',') FROM user_tags t WHERE t.user_id = u.id) AS tags"
            " FROM users u WHERE u.workspace_id = $1", api.workspace_id):
        people.append(tuple(row.values()))
    return sorted(people, key=repr)


async def import_in_batches(client: httpx.AsyncClient, api: Api, redis_url: str, text: str) -> tuple[Any, ...]:
    await f.tag(api, "tier")
    base = await f.group(api, "Base")
    await f.user(api, "user7", phone="+8613011110007", displayName="Before the import", groupIds=[base["id"]])
    started = await start(api, uploadId=await upload(client, api, text), mapping=MAPPING, groupIds=[base["id"]],
                          source="crm")
    assert started["userErrors"] == []
    await work(redis_url)
    job = (await api(JOB, id=started["job"]["id"]))["job"]
    assert job["status"] == "SUCCEEDED", job
    report = (await client.get(job["errorReport"]["downloadUrl"].replace("http://roster", ""))).text
    return await snapshot(api), job["counts"], report


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_planning_ahead_imports_exactly_what_planning_in_turn_does(
        client: httpx.AsyncClient, redis_url: str, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(get_settings(), "import_batch_size", 7)
    text = contacts_file(400, seed)
    ahead = await import_in_batches(client, await make_workspace(client, name="Ahead"), redis_url, text)
    monkeypatch.setattr("jobs.imports.PLAN_AHEAD", False)
    in_turn = await import_in_batches(client, await make_workspace(client, name="In turn"), redis_url, text)
    assert ahead == in_turn
    counts = ahead[1]
    assert counts["merged"] > 0 and counts["updated"] > 0 and counts["failed"] > 0  # the file exercises them all


async def test_a_person_written_by_the_batch_in_flight_still_counts_towards_the_identity_limit(
        client: httpx.AsyncClient, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "import_batch_size", 2)
    emails = ",".join(f"e{i}@example.com" for i in range(1, 5))
    text = ("name,username,phone,email,tier,group\n"
            f"Four,,13011112222,\"{emails}\",,\n"
            "Other,,13011113333,,,\n"
            "Two more,,13011112222,\"e5@example.com,e6@example.com\",,\n")
    people, counts, report = await import_in_batches(client, api, redis_url, text)
    assert counts["failed"] == 1 and "IDENTITY_LIMIT" in report
    assert sum(len(p[3]) for p in people if p[0] == "Four") == 5  # phone + 4 emails, nothing added


USERNAME_MAPPING = [{"column": 0, "target": "NAME"}, {"column": 1, "target": "USERNAME"},
                    {"column": 2, "target": "IDENTITY", "identityType": "PHONE"},
                    {"column": 3, "target": "IDENTITY", "identityType": "EMAIL"}]


async def one_row_batches(client: httpx.AsyncClient, redis_url: str, monkeypatch: pytest.MonkeyPatch, name: str,
                          ahead: bool, text: str, policy: str, before: Any) -> tuple[Any, list[Any]]:
    monkeypatch.setattr(get_settings(), "import_batch_size", 1)
    monkeypatch.setattr("jobs.imports.PLAN_AHEAD", ahead)
    api = await make_workspace(client, name=name)
    base = await f.group(api, "Base")
    await before(api)
    started = await start(api, uploadId=await upload(client, api, text), mapping=USERNAME_MAPPING,
                          duplicatePolicy=policy, source="crm", groupIds=[base["id"]])
    await work(redis_url)
    job = (await api(JOB, id=started["job"]["id"]))["job"]
    people = await db.fetch("SELECT u.display_name, ARRAY(SELECT i.value FROM identities i WHERE i.user_id = u.id"
                            " ORDER BY i.value) AS ids FROM users u WHERE u.workspace_id = $1 ORDER BY u.id",
                            api.workspace_id)
    return job["counts"], [tuple(p.values()) for p in people]


async def test_a_person_the_batch_in_flight_drops_is_not_trusted_by_the_next_plan(
        client: httpx.AsyncClient, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer drops a person of batch N (username taken): batch N+1, planned against N's overlay, is planned
    again, so its row with the same phone creates that person (IGNORE) or gets the email (OVERWRITE)."""
    async def alice(api: Api) -> None:
        await f.user(api, "alice", phone="+8613011119999", displayName="Holder")

    async def bob_and_u(api: Api) -> None:
        await f.user(api, "bob", phone="+8613011119999", displayName="Bob")
        await f.user(api, "tmp", phone="+8613011110001", displayName="U")
        await db.execute("UPDATE users SET username = NULL WHERE username = 'tmp'")

    cases = [("IGNORE", "name,username,phone,email\nA,alice,13011110001,\nB,,13011110001,\n", alice),
             ("OVERWRITE", "name,username,phone,email\nX,bob,13011110001,new@example.com\nY,,,new@example.com\n",
              bob_and_u)]
    for policy, text, before in cases:
        results = [await one_row_batches(client, redis_url, monkeypatch, f"{policy} {ahead}", ahead, text, policy,
                                         before) for ahead in (True, False)]
        assert results[0] == results[1], policy
    assert ("Y", ["new@example.com"]) in results[0][1]


async def test_a_user_the_batch_in_flight_adds_to_counts_whichever_key_the_next_batch_meets_it_by(
        api: Api, database_url: str) -> None:
    await f.user(api, "u", phone="+8613011110001", displayName="U",
                 identities=[{"type": "EMAIL", "value": f"e{i}@x.com"} for i in range(1, 5)])
    rules = [ColumnRule(0, "NAME"), ColumnRule(1, "IDENTITY", identity_type="PHONE"),
             ColumnRule(2, "IDENTITY", identity_type="EMAIL")]
    spec = RowSpec(rules, "CN", "crm")
    params = ImportParams(upload_file_id=0, rules=rules, default_region="CN", overwrite=True, group_ids=[],
                          source="crm")
    ctx = batch_context(api.workspace_id, params)
    planner = await asyncpg.connect(database_url)
    try:  # batch N gives U a fifth email; N+1 meets U by an older email and brings a sixth
        planned, overlay = await plan_ahead(ctx, [parse_row(0, ["U", "13011110001", "e5@x.com"], spec)], planner, None)
        async with db.transaction() as conn:
            await write_planned(api.workspace_id, planned, params, conn, actor="test")
            planned_next, _ = await plan_ahead(ctx, [parse_row(1, ["U", "", "e1@x.com,e6@x.com"], spec)], planner,
                                               overlay)  # before N commits
        async with db.transaction() as conn:
            written = await write_planned(api.workspace_id, planned_next, params, conn, actor="test")
    finally:
        await planner.close()
    assert [e.code for e in written.errors] == ["IDENTITY_LIMIT"]
    assert await db.fetchval("SELECT count(*) FROM identities WHERE type = 'EMAIL'") == 5


async def test_a_stray_identity_of_a_deleted_user_does_not_hold_its_key(api: Api) -> None:
    """An identity whose user is gone (a late writer's, until the sweep) owns nothing: an import, identityAdd and
    contactsUpsert give the key to a live user."""
    async def stray(value: str) -> None:
        await db.execute("INSERT INTO identities (workspace_id, user_id, type, channel, value, encryption)"
                         " VALUES ($1, 987654321, 'PHONE', '', $2, 'NONE')", api.workspace_id, value)

    await stray("+8613011110001")
    rules = [ColumnRule(0, "NAME"), ColumnRule(1, "IDENTITY", identity_type="PHONE")]
    params = ImportParams(upload_file_id=0, rules=rules, default_region="CN", overwrite=True, group_ids=[],
                          source="crm")
    async with db.transaction() as conn:
        written = await write_batch(api.workspace_id, [parse_row(0, ["Imported", "13011110001"],
                                                                 RowSpec(rules, "CN", "crm"))], params, conn, "test")
    assert written.counts["created"] == 1
    await stray("+8613011110002")
    user = await f.user(api, "added", displayName="Added")
    await api.ok(IDENTITY_ADD, input={"userId": user["id"], "identity": {"type": "PHONE", "value": "13011110002"}})
    await stray("+8613011110003")
    group = await f.group(api, "Leads")
    await api.ok(UPSERT, input={"groupIds": [group["id"]], "contacts": [{"phone": "13011110003", "name": "Upserted"}]})
    owners = await db.fetch("SELECT i.value, u.display_name FROM identities i JOIN users u ON u.id = i.user_id"
                            " ORDER BY i.value")
    assert [tuple(r.values()) for r in owners] == [("+8613011110001", "Imported"), ("+8613011110002", "Added"),
                                                   ("+8613011110003", "Upserted")]
    assert await db.fetchval("SELECT count(*) FROM identities WHERE user_id = 987654321") == 0


async def test_an_import_refreshes_the_statistics_of_the_tables_it_grows(
        client: httpx.AsyncClient, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobs.imports._ANALYZE_AFTER", 20)
    monkeypatch.setattr(get_settings(), "import_batch_size", 7)
    started = await db.fetchval("SELECT clock_timestamp()")
    await import_in_batches(client, api, redis_url, contacts_file(200, 4))
    for _ in range(50):  # statistics reach the views within about a second
        analyzed = await db.fetchval("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'identities'")
        if analyzed and analyzed > started:
            break
        await asyncio.sleep(0.1)
    assert analyzed and analyzed > started
