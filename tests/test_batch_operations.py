"""groupsAssociate / groupsChange / groupsRemoveUsers and usersTag / usersUntag over ids or a filter."""
from __future__ import annotations

from typing import Any

from schema.common import from_global_id
from tests import factories as f
from tests.conftest import Api

ASSOCIATE = """mutation($input: GroupsAssociateInput!) { groupsAssociate(input: $input) {
  usersAffected membershipsAdded membershipsRemoved userErrors { field code message } } }"""
CHANGE = """mutation($input: GroupsChangeInput!) { groupsChange(input: $input) {
  group { id name labels } usersAffected membershipsAdded membershipsRemoved userErrors { field code message } } }"""
REMOVE = """mutation($input: GroupsRemoveUsersInput!) { groupsRemoveUsers(input: $input) {
  usersAffected membershipsRemoved refusedUserIds userErrors { field code message } } }"""
TAG = """mutation($input: UsersTagInput!) { usersTag(input: $input) { usersAffected userErrors { field code message } } }"""
UNTAG = """mutation($input: UsersUntagInput!) { usersUntag(input: $input) { usersAffected userErrors { field code } } }"""


async def timeline_of(api: Api, user_id: str) -> list[dict[str, Any]]:
    data = await api("query($id: ID!) { user(id: $id) { activities { totalCount edges { node {"
                     " id kind payload actor user { id } } } } } }", id=user_id)
    edges = data["user"]["activities"]["edges"]
    assert data["user"]["activities"]["totalCount"] == len(edges)
    return [e["node"] for e in edges]


async def groups_of(api: Api, user: dict[str, Any]) -> list[str]:
    data = await api("query($id: ID!) { user(id: $id) { groups { name } } }", id=user["id"])
    return [g["name"] for g in data["user"]["groups"]]


async def test_associate_appends_or_replaces_groups_for_ids(api: Api) -> None:
    a, b, c = [await f.group(api, n) for n in "ABC"]
    u1 = await f.user(api, "u1", groupIds=[a["id"]])
    u2 = await f.user(api, "u2", groupIds=[a["id"], b["id"]])
    payload = await api.ok(ASSOCIATE, input={"target": {"ids": [u1["id"], u2["id"]]}, "groupIds": [b["id"], c["id"]]})
    assert (payload["usersAffected"], payload["membershipsAdded"], payload["membershipsRemoved"]) == (2, 3, 0)
    assert await groups_of(api, u1) == ["A", "B", "C"]
    payload = await api.ok(ASSOCIATE, input={"target": {"ids": [u1["id"], u2["id"]]}, "groupIds": [c["id"]],
                                             "method": "REPLACE"})
    assert (payload["usersAffected"], payload["membershipsAdded"], payload["membershipsRemoved"]) == (2, 0, 4)
    assert await groups_of(api, u1) == ["C"] and await groups_of(api, u2) == ["C"]


async def test_associate_by_filter_records_timeline_and_validates_groups(api: Api) -> None:
    a, b = await f.group(api, "A"), await f.group(api, "B")
    for i in range(3):
        await f.user(api, f"gold{i}", memberLevel="gold", groupIds=[a["id"]])
    silver = await f.user(api, "silver", memberLevel="silver", groupIds=[a["id"]])
    payload = await api.ok(ASSOCIATE, input={"target": {"filter": {"memberLevels": ["gold"]}}, "groupIds": [b["id"]]})
    assert payload["usersAffected"] == 3
    members = await api("query($g: [ID!]) { users(filter: {groupIds: $g}) { totalCount } }", g=[b["id"]])
    assert members["users"]["totalCount"] == 3 and await groups_of(api, silver) == ["A"]
    count = await api("{ users(filter: {memberLevels: [\"gold\"]}) { edges { node { id } } } }")
    gold_id = count["users"]["edges"][0]["node"]["id"]
    entries = await timeline_of(api, gold_id)
    assert [(e["kind"], e["payload"], e["user"]["id"]) for e in entries] == [
        ("GROUP_CHANGE", {"added": [from_global_id(b["id"])[1]], "removed": []}, gold_id)]
    assert await timeline_of(api, silver["id"]) == []
    for groups, code in (([], "GROUP_REQUIRED"), (["R3JvdXA6OTk5"], "GROUP_NOT_FOUND")):
        data = await api(ASSOCIATE, input={"target": {"ids": [silver["id"]]}, "groupIds": groups})
        assert data["groupsAssociate"]["userErrors"][0]["code"] == code
    data = await api(ASSOCIATE, input={"target": {"filter": {"tags": [{"key": "x", "op": "EXISTS"}]}},
                                       "groupIds": [b["id"]]})
    assert data["groupsAssociate"]["userErrors"][0] == {
        "field": ["target", "filter", "tags", "0", "key"], "code": "UNKNOWN_TAG", "message": "no tag with key 'x'"}


async def test_selector_needs_exactly_one_of_ids_or_filter(api: Api) -> None:
    group = await f.group(api, "A")
    body = await api.raw(ASSOCIATE, {"input": {"target": {}, "groupIds": [group["id"]]}})
    assert "exactly one" in body["errors"][0]["message"].lower()


async def test_change_moves_users_to_existing_or_new_group(api: Api) -> None:
    a, b, c = [await f.group(api, n) for n in "ABC"]
    u1 = await f.user(api, "u1", groupIds=[a["id"], b["id"]])
    u2 = await f.user(api, "u2", groupIds=[a["id"]])
    payload = await api.ok(CHANGE, input={"target": {"ids": [u1["id"]]}, "toGroupIds": [c["id"]],
                                          "fromGroupId": a["id"]})
    assert await groups_of(api, u1) == ["B", "C"] and payload["membershipsRemoved"] == 1
    payload = await api.ok(CHANGE, input={"target": {"ids": [u1["id"], u2["id"]]},
                                          "newGroup": {"name": "Winners", "labels": ["q4"]}})
    assert payload["group"]["name"] == "Winners" and payload["group"]["labels"] == ["q4"]
    assert await groups_of(api, u1) == ["Winners"] and await groups_of(api, u2) == ["Winners"]
    data = await api(CHANGE, input={"target": {"ids": [u1["id"]]}, "newGroup": {"name": "A"}})
    assert data["groupsChange"]["userErrors"][0]["code"] == "NAME_TAKEN"
    data = await api(CHANGE, input={"target": {"ids": [u1["id"]]}})
    assert data["groupsChange"]["userErrors"][0]["code"] == "INVALID_INPUT"
    assert await groups_of(api, u1) == ["Winners"]


async def test_remove_refuses_users_whose_last_group_it_is_and_removes_the_rest(api: Api) -> None:
    a, b = await f.group(api, "A"), await f.group(api, "B")
    only_a = await f.user(api, "only_a", groupIds=[a["id"]])
    both = await f.user(api, "both", groupIds=[a["id"], b["id"]])
    data = await api(REMOVE, input={"groupId": a["id"], "target": {"ids": [only_a["id"], both["id"]]}})
    payload = data["groupsRemoveUsers"]
    assert payload["membershipsRemoved"] == 1 and payload["refusedUserIds"] == [only_a["id"]]
    assert payload["userErrors"][0]["code"] == "LAST_GROUP"
    assert await groups_of(api, only_a) == ["A"] and await groups_of(api, both) == ["B"]


async def test_users_tag_sets_values_by_filter_including_users_missing_the_tag(api: Api) -> None:
    await f.tag(api, "tier", "MULTI_VALUE", ["gold", "silver"])
    await f.user(api, "has", tags=[{"key": "tier", "values": ["silver"]}])
    for i in range(3):
        await f.user(api, f"none{i}")
    payload = await api.ok(TAG, input={"target": {"filter": {"tags": [{"key": "tier", "op": "MISSING"}]}},
                                       "key": "tier", "values": ["gold"], "conflictPolicy": "OVERWRITE"})
    assert payload["usersAffected"] == 3
    data = await api("{ users(first: 10, orderBy: {field: ID, direction: ASC}) { edges { node { username"
                     " tag(key: \"tier\") { values source locked } } } } }")
    tags = {e["node"]["username"]: e["node"]["tag"] for e in data["users"]["edges"]}
    assert tags["has"] == {"values": ["silver"], "source": "MANUAL", "locked": True}
    assert tags["none0"] == {"values": ["gold"], "source": "BULK", "locked": False}
    again = await api.ok(TAG, input={"target": {"filter": {}}, "key": "tier", "values": ["gold"]})
    assert again["usersAffected"] == 4  # KEEP_MANUAL locks the three, and "has" changes value
    for values, code in ((["bronze"], "INVALID_TAG_VALUE"), ([], "INVALID_TAG_VALUE")):
        data = await api(TAG, input={"target": {"filter": {}}, "key": "tier", "values": values})
        assert data["usersTag"]["userErrors"][0]["code"] == code
    data = await api(TAG, input={"target": {"filter": {}}, "key": "nope", "values": ["x"]})
    assert data["usersTag"]["userErrors"][0]["code"] == "UNKNOWN_TAG"


async def test_users_untag_removes_the_value(api: Api) -> None:
    await f.tag(api, "vip", "BOOLEAN")
    user = await f.user(api, "v", tags=[{"key": "vip", "values": ["true"]}])
    assert (await api.ok(UNTAG, input={"target": {"ids": [user["id"]]}, "key": "vip"}))["usersAffected"] == 1
    data = await api("{ users(filter: {tags: [{key: \"vip\", op: MISSING}]}) { totalCount } }")
    assert data["users"]["totalCount"] == 1


async def test_batch_operations_never_touch_another_workspace(api: Api, client) -> None:
    from tests.conftest import make_workspace
    other = await make_workspace(client, name="Other")
    other_group = await f.group(other, "Theirs")
    theirs = await f.user(other, "theirs", groupIds=[other_group["id"]])
    mine = await f.group(api, "Mine")
    await f.tag(api, "vip", "BOOLEAN")
    payload = await api.ok(ASSOCIATE, input={"target": {"ids": [theirs["id"]]}, "groupIds": [mine["id"]]})
    assert payload["usersAffected"] == 0
    data = await api(ASSOCIATE, input={"target": {"filter": {}}, "groupIds": [other_group["id"]]})
    assert data["groupsAssociate"]["userErrors"][0]["code"] == "GROUP_NOT_FOUND"
    assert (await api.ok(TAG, input={"target": {"ids": [theirs["id"]]}, "key": "vip", "values": ["1"]}))[
        "usersAffected"] == 0
    assert await groups_of(other, theirs) == ["Theirs"]
