"""What the batch-write storage (migration 0005) must keep true: shared timeline entries read like a user's
own, follow merges and deletions; rows of deleted users, groups and tags never linger; a concurrent writer of
the same memberships or tag values makes a batch fall back, not fail."""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from jobs.imports import ImportParams, write_batch
from models import db, orphans
from models.errors import DomainError
from models.filters import ORDER_COLUMNS
from models.import_rows import ColumnRule, RowSpec, parse_row
from models.memberships import serialise_batches
from models.tag_values import lock_tags
from models.users import existing_group_ids
from schema.common import from_global_id
from tests import factories as f
from tests.conftest import Api
from tests.test_batch_operations import ASSOCIATE, REMOVE, TAG, timeline_of
from tests.test_settings_and_deletion import DELETE, enable_deletion
from tests.test_users import IDENTITY_ADD

NODE = "query($id: ID!) { node(id: $id) { ... on Activity { id kind payload user { id } } } }"
GROUP_DELETE = "mutation($id: ID!) { groupDelete(input: {id: $id}) { userErrors { code } } }"
TAG_DELETE = "mutation($id: ID!) { tagDelete(input: {id: $id}) { userErrors { code } } }"


def pk(global_id: str) -> int:
    return from_global_id(global_id)[1]


async def child_rows(table: str, column: str, value: int) -> int:
    return await db.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", value)


async def test_a_batch_entry_is_shared_by_its_users_and_reads_as_each_ones_own(api: Api) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    users = [await f.user(api, f"u{i}", memberLevel="gold", groupIds=[home["id"]]) for i in range(3)]
    await api.ok(ASSOCIATE, input={"target": {"filter": {"memberLevels": ["gold"]}}, "groupIds": [vip["id"]]})
    entries = [await timeline_of(api, u["id"]) for u in users]
    assert [[(e["kind"], e["user"]["id"]) for e in timeline] for timeline in entries] == [
        [("GROUP_CHANGE", u["id"])] for u in users]
    assert len({e[0]["id"] for e in entries}) == 1  # one row for the three (their ids share a bucket)
    fetched = (await api(NODE, id=entries[0][0]["id"]))["node"]
    assert fetched["payload"] == {"added": [pk(vip["id"])], "removed": []} and fetched["user"] is None

    only = await f.user(api, "only", memberLevel="silver", groupIds=[home["id"]])
    await api.ok(ASSOCIATE, input={"target": {"ids": [only["id"]]}, "groupIds": [vip["id"]]})
    (entry,) = await timeline_of(api, only["id"])
    assert (await api(NODE, id=entry["id"]))["node"]["user"] == {"id": only["id"]}


async def test_a_merge_gives_the_survivor_the_merged_users_shared_entries(api: Api) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    old = await f.user(api, "old", phone="+8613011110001", groupIds=[home["id"]])
    new = await f.user(api, "new", email="new@example.com", memberLevel="gold", groupIds=[home["id"]])
    await api.ok(ASSOCIATE, input={"target": {"filter": {"memberLevels": ["gold"]}}, "groupIds": [vip["id"]]})
    await api.ok(IDENTITY_ADD, input={"userId": new["id"], "identity": {"type": "PHONE", "value": "13011110001"}})
    kinds = [(e["kind"], e["payload"], e["user"]["id"]) for e in await timeline_of(api, old["id"])]
    assert ("GROUP_CHANGE", {"added": [pk(vip["id"])], "removed": []}, old["id"]) in kinds
    assert await db.fetchval("SELECT count(*) FROM shared_activities WHERE $1 = ANY(user_ids)", pk(new["id"])) == 0


async def test_deleting_users_takes_them_out_of_shared_entries_and_their_rows_with_them(api: Api) -> None:
    await enable_deletion(api)
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    tier = await f.tag(api, "tier")
    a, b = [await f.user(api, n, memberLevel="gold", groupIds=[home["id"]]) for n in ("a", "b")]
    await api.ok(ASSOCIATE, input={"target": {"filter": {"memberLevels": ["gold"]}}, "groupIds": [vip["id"]]})
    await api.ok(TAG, input={"target": {"ids": [a["id"], b["id"]]}, "key": tier["key"], "values": ["gold"]})
    await api.ok(DELETE, ids=[a["id"]])
    assert [len(await timeline_of(api, b["id"]))] == [1]
    assert await db.fetchval("SELECT array_agg(u) FROM shared_activities, unnest(user_ids) u") == [pk(b["id"])]
    assert (await child_rows("group_members", "user_id", pk(a["id"])),
            await child_rows("user_tags", "user_id", pk(a["id"]))) == (0, 0)
    await api.ok(DELETE, ids=[b["id"]])
    assert await db.fetchval("SELECT count(*) FROM shared_activities") == 0


async def test_group_and_tag_deletion_remove_their_rows(api: Api) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    tier = await f.tag(api, "tier")
    user = await f.user(api, "u", groupIds=[home["id"], vip["id"]], tags=[{"key": "tier", "values": ["gold"]}])
    await api.ok(GROUP_DELETE, id=vip["id"])
    await api.ok(TAG_DELETE, id=tier["id"])
    assert (await child_rows("group_members", "group_id", pk(vip["id"])),
            await child_rows("user_tags", "tag_id", pk(tier["id"]))) == (0, 0)
    data = await api("query($id: ID!) { user(id: $id) { groups { name } tags { key } } }", id=user["id"])
    assert data["user"] == {"groups": [{"name": "Home"}], "tags": []}


async def test_sweep_removes_rows_a_late_writer_added_once_no_older_transaction_runs(
        api: Api, database_url: str) -> None:
    await enable_deletion(api)
    home = await f.group(api, "Home")
    user = await f.user(api, "gone", groupIds=[home["id"]])
    late = await asyncpg.connect(database_url)
    try:
        writer = late.transaction()  # a batch that read the user before the deletion committed
        await writer.start()
        await late.execute("SELECT 1")
        await api.ok(DELETE, ids=[user["id"]])
        await late.execute("INSERT INTO group_members (workspace_id, group_id, user_id, source)"
                           " VALUES ($1, $2, $3, 'MANUAL')", api.workspace_id, pk(home["id"]), pk(user["id"]))
        assert await orphans.sweep() == 0  # the writer is still running: its row may still come
        await writer.commit()
        assert await child_rows("group_members", "user_id", pk(user["id"])) == 1
        assert await orphans.sweep() == 1
        assert await child_rows("group_members", "user_id", pk(user["id"])) == 0
        assert await db.fetchval("SELECT count(*) FROM deleted_parents") == 0
    finally:
        await late.close()


async def test_a_concurrent_writer_of_the_same_rows_makes_a_batch_fall_back_not_fail(
        api: Api, database_url: str) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    tier = await f.tag(api, "tier")
    users = [await f.user(api, f"u{i}", memberLevel="gold", groupIds=[home["id"]]) for i in range(3)]
    other = await asyncpg.connect(database_url)
    try:
        async def racing(statement: str, *args: Any, mutation: str, input_: dict[str, Any]) -> dict[str, Any]:
            """Hold an uncommitted row the batch will also write; commit it while the batch waits on it."""
            tx = other.transaction()
            await tx.start()
            await other.execute(statement, *args)
            batch = asyncio.create_task(api.ok(mutation, input=input_))
            await asyncio.sleep(0.5)  # the batch is now blocked on our row's unique key
            await tx.commit()
            return await batch

        payload = await racing(
            "INSERT INTO group_members (workspace_id, group_id, user_id, source) VALUES ($1, $2, $3, 'MANUAL')",
            api.workspace_id, pk(vip["id"]), pk(users[0]["id"]),
            mutation=ASSOCIATE, input_={"target": {"filter": {"memberLevels": ["gold"]}}, "groupIds": [vip["id"]]})
        assert (payload["usersAffected"], payload["membershipsAdded"]) == (2, 2)
        assert await child_rows("group_members", "group_id", pk(vip["id"])) == 3

        payload = await racing(
            "INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked)"
            " VALUES ($1, $2, $3, '{silver}', 'MANUAL', true)", api.workspace_id, pk(users[1]["id"]), pk(tier["id"]),
            mutation=TAG, input_={"target": {"filter": {"memberLevels": ["gold"]}}, "key": "tier", "values": ["gold"],
                                  "conflictPolicy": "OVERWRITE"})
        assert payload["usersAffected"] == 3
        values = await db.fetch("SELECT \"values\", locked FROM user_tags WHERE tag_id = $1", pk(tier["id"]))
        assert [(list(r["values"]), r["locked"]) for r in values] == [(["gold"], False)] * 3
    finally:
        await other.close()


async def test_a_late_row_of_a_deleted_group_does_not_count_as_a_users_other_group(api: Api) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    user = await f.user(api, "u", groupIds=[home["id"]])
    await api.ok(GROUP_DELETE, id=vip["id"])
    # What a writer that read VIP before its deletion could still add (the sweep removes it later).
    await db.execute("INSERT INTO group_members (workspace_id, group_id, user_id, source) VALUES ($1, $2, $3,"
                     " 'MANUAL')", api.workspace_id, pk(vip["id"]), pk(user["id"]))
    data = await api(REMOVE, input={"groupId": home["id"], "target": {"ids": [user["id"]]}})
    assert data["groupsRemoveUsers"]["refusedUserIds"] == [user["id"]]
    assert data["groupsRemoveUsers"]["userErrors"][0]["code"] == "LAST_GROUP"


async def test_group_and_tag_deletion_wait_for_a_writer_and_then_take_its_rows(api: Api, database_url: str) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    tier = await f.tag(api, "tier")
    user = await f.user(api, "u", groupIds=[home["id"]])
    writer = await asyncpg.connect(database_url)
    try:
        tx = writer.transaction()
        await tx.start()  # a batch: checks (and so locks) its group and tag, then writes for them
        await existing_group_ids(api.workspace_id, [pk(vip["id"])], writer)
        await lock_tags(api.workspace_id, [pk(tier["id"])], writer)
        await writer.execute("INSERT INTO group_members (workspace_id, group_id, user_id, source) VALUES"
                             " ($1, $2, $3, 'MANUAL')", api.workspace_id, pk(vip["id"]), pk(user["id"]))
        await writer.execute("INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked)"
                             " VALUES ($1, $2, $3, '{gold}', 'BULK', false)", api.workspace_id, pk(user["id"]),
                             pk(tier["id"]))
        deletions = asyncio.gather(api.ok(GROUP_DELETE, id=vip["id"]), api.ok(TAG_DELETE, id=tier["id"]))
        await asyncio.sleep(0.5)
        assert not deletions.done()  # waiting for the writer
        await tx.commit()
        await deletions
    finally:
        await writer.close()
    assert (await child_rows("group_members", "group_id", pk(vip["id"])),
            await child_rows("user_tags", "tag_id", pk(tier["id"]))) == (0, 0)  # without any sweep


async def test_a_batch_waits_for_another_batch_removing_the_same_memberships(api: Api, database_url: str) -> None:
    home, vip = await f.group(api, "Home"), await f.group(api, "VIP")
    user = await f.user(api, "u", groupIds=[home["id"], vip["id"]])
    other = await asyncpg.connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()  # a REPLACE under way: it has removed the user from VIP, not yet committed
        await serialise_batches(api.workspace_id, other)
        await other.execute("DELETE FROM group_members WHERE group_id = $1", pk(vip["id"]))
        associate = asyncio.create_task(api.ok(ASSOCIATE, input={"target": {"ids": [user["id"]]},
                                                                 "groupIds": [vip["id"]]}))
        await asyncio.sleep(0.5)
        await tx.commit()
        assert (await associate)["membershipsAdded"] == 1  # it ran after the removal, not beside it
    finally:
        await other.close()
    data = await api("query($id: ID!) { user(id: $id) { groups { name } } }", id=user["id"])
    assert sorted(g["name"] for g in data["user"]["groups"]) == ["Home", "VIP"]


async def test_an_import_whose_group_is_deleted_midway_fails_clearly(api: Api) -> None:
    vip = await f.group(api, "VIP")
    await api.ok(GROUP_DELETE, id=vip["id"])
    params = ImportParams(upload_file_id=0, rules=[ColumnRule(0, "IDENTITY", identity_type="PHONE")],
                          default_region="CN", overwrite=True, group_ids=[pk(vip["id"])], source="crm.csv")
    row = parse_row(0, ["13011110001"], RowSpec(params.rules, "CN", "crm.csv"))
    with pytest.raises(DomainError) as failure:
        async with db.transaction() as conn:
            await write_batch(api.workspace_id, [row], params, conn, actor="test")
    assert failure.value.code == "GROUP_NOT_FOUND"
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_identities_go_with_their_user_and_no_late_writer_leaves_one_behind(
        api: Api, database_url: str) -> None:
    """Identities have no foreign key since migration 0006: deletion, writers' locks and the sweep keep them tied
    to live users, so a deleted user's phone is free again."""
    await enable_deletion(api)
    home = await f.group(api, "Home")
    first = await f.user(api, "first", phone="+8613011110001", groupIds=[home["id"]])
    await api.ok(DELETE, ids=[first["id"]])
    assert await child_rows("identities", "user_id", pk(first["id"])) == 0
    second = await f.user(api, "second", phone="+8613011110001", groupIds=[home["id"]])

    deleting = await asyncpg.connect(database_url)
    try:  # identityAdd beside a deletion under way waits for it, then finds no user
        tx = deleting.transaction()
        await tx.start()
        await deleting.execute("DELETE FROM users WHERE id = $1", pk(second["id"]))
        await orphans.forget(api.workspace_id, "user", [pk(second["id"])], deleting)
        add = asyncio.create_task(api(IDENTITY_ADD, input={
            "userId": second["id"], "identity": {"type": "EMAIL", "value": "late@example.com"}}))
        await asyncio.sleep(0.5)
        assert not add.done()
        await tx.commit()
        assert [e["code"] for e in (await add)["identityAdd"]["userErrors"]] == ["NOT_FOUND"]
    finally:
        await deleting.close()
    assert await db.fetchval("SELECT count(*) FROM identities") == 0

    late = await asyncpg.connect(database_url)
    try:  # a writer that skipped the lock: its identity is swept like a late membership
        third = await f.user(api, "third", groupIds=[home["id"]])
        writer = late.transaction()
        await writer.start()
        await late.execute("SELECT 1")
        await api.ok(DELETE, ids=[third["id"]])
        await late.execute("INSERT INTO identities (workspace_id, user_id, type, channel, value, encryption)"
                           " VALUES ($1, $2, 'EMAIL', '', 'stray@example.com', 'NONE')", api.workspace_id,
                           pk(third["id"]))
        await writer.commit()
        assert await orphans.sweep() >= 1
        assert await child_rows("identities", "user_id", pk(third["id"])) == 0
    finally:
        await late.close()


async def test_an_import_batch_whose_matched_user_is_deleted_meanwhile_creates_the_person_anew(
        api: Api, database_url: str) -> None:
    await enable_deletion(api)
    home = await f.group(api, "Home")
    old = await f.user(api, "old", phone="+8613011110001", groupIds=[home["id"]])
    params = ImportParams(upload_file_id=0, rules=[ColumnRule(0, "NAME"), ColumnRule(1, "IDENTITY",
                                                                                    identity_type="PHONE")],
                          default_region="CN", overwrite=True, group_ids=[pk(home["id"])], source="crm.csv")
    row = parse_row(0, ["Returning", "13011110001"], RowSpec(params.rules, "CN", "crm.csv"))
    deleting = await asyncpg.connect(database_url)
    try:
        tx = deleting.transaction()
        await tx.start()  # the matched user is being deleted (with its identities) while the batch runs
        await deleting.execute("DELETE FROM users WHERE id = $1", pk(old["id"]))
        await orphans.forget(api.workspace_id, "user", [pk(old["id"])], deleting)

        async def batch() -> Any:
            async with db.transaction() as conn:
                return await write_batch(api.workspace_id, [row], params, conn, actor="test")

        running = asyncio.create_task(batch())
        await asyncio.sleep(0.5)
        assert not running.done()  # waiting on the user's lock
        await tx.commit()
        written = await running
    finally:
        await deleting.close()
    assert (written.counts["created"], written.counts["updated"]) == (1, 0)
    owner = await db.fetchrow("SELECT u.id, u.display_name FROM identities i JOIN users u ON u.id = i.user_id"
                              " WHERE i.value = '+8613011110001'")
    assert owner["display_name"] == "Returning" and owner["id"] != pk(old["id"])


@pytest.mark.parametrize("field", sorted(ORDER_COLUMNS))
async def test_every_users_order_reads_an_index_instead_of_sorting_the_workspace(api: Api, field: str) -> None:
    expr = ORDER_COLUMNS[field]
    tail = "" if expr == "u.id" else ", u.id DESC"
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL enable_sort = off")  # a Sort node then means no index has this order
        plan = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN SELECT u.* FROM users u WHERE u.workspace_id = $1 ORDER BY {expr} DESC{tail} LIMIT 51",
            api.workspace_id))
    assert "Sort" not in plan, plan
