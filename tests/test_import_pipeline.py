"""Planning the next batch while the current one is written (jobs.imports.PLAN_AHEAD) changes nothing a user
sees: the same file, in batches that share people with earlier ones (repeats, joins, merges, usernames),
imports to the same contacts, counts and error report as batches planned one after the other."""
from __future__ import annotations

import csv
import io
import random
from typing import Any

import httpx
import pytest

from models import db
from settings import get_settings
from tests import factories as f
from tests.conftest import Api, make_workspace, work
from tests.test_imports import JOB, start, upload

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
