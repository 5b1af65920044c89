"""Groups and tags: create, update, delete, list, and their bad inputs."""
from __future__ import annotations

from tests import factories as f
from tests.conftest import Api

UPDATE_GROUP = """mutation($input: GroupUpdateInput!) { groupUpdate(input: $input) {
  group { id name description labels } userErrors { field code } } }"""
DELETE_GROUP = "mutation($id: ID!) { groupDelete(input: {id: $id}) { deletedGroupId userErrors { code } } }"
UPDATE_TAG = """mutation($input: TagUpdateInput!) { tagUpdate(input: $input) {
  tag { id name allowedValues tagGroup { name } } userErrors { field code message } } }"""
DELETE_TAG = "mutation($id: ID!) { tagDelete(input: {id: $id}) { deletedTagId userErrors { code } } }"
GROUPS = """query($q: String, $first: Int, $after: String) { groups(query: $q, first: $first, after: $after) {
  totalCount edges { node { name memberCount } } pageInfo { hasNextPage endCursor } } }"""


async def test_group_create_update_and_name_rules(api: Api) -> None:
    group = await f.group(api, "Spring sale", description="d", labels=["promo", "promo", "2026"])
    assert group["labels"] == ["2026", "promo"] and group["memberCount"] == 0
    dup = await api(f.CREATE_GROUP, input={"name": "Spring sale"})
    assert dup["groupCreate"]["userErrors"][0]["code"] == "NAME_TAKEN"
    empty = await api(f.CREATE_GROUP, input={"name": " "})
    assert empty["groupCreate"]["userErrors"][0]["code"] == "NAME_REQUIRED"
    updated = await api.ok(UPDATE_GROUP, input={"id": group["id"], "name": "Summer sale", "description": None})
    assert updated["group"]["name"] == "Summer sale" and updated["group"]["description"] is None
    await f.group(api, "Other")
    clash = await api(UPDATE_GROUP, input={"id": group["id"], "name": "Other"})
    assert clash["groupUpdate"]["userErrors"][0]["code"] == "NAME_TAKEN"


async def test_groups_list_pages_by_name_and_counts_members(api: Api) -> None:
    groups = [await f.group(api, name) for name in ["delta", "Alpha", "charlie", "bravo"]]
    await f.user(api, "u", groupIds=[groups[1]["id"], groups[3]["id"]])
    page = (await api(GROUPS, first=2))["groups"]
    assert [e["node"]["name"] for e in page["edges"]] == ["Alpha", "bravo"]
    assert [e["node"]["memberCount"] for e in page["edges"]] == [1, 1] and page["totalCount"] == 4
    rest = (await api(GROUPS, first=2, after=page["pageInfo"]["endCursor"]))["groups"]
    assert [e["node"]["name"] for e in rest["edges"]] == ["charlie", "delta"]
    assert not rest["pageInfo"]["hasNextPage"]
    assert [e["node"]["name"] for e in (await api(GROUPS, q="ALP"))["groups"]["edges"]] == ["Alpha"]


async def test_group_delete_removes_memberships_but_keeps_users(api: Api) -> None:
    group = await f.group(api, "Temp")
    user = await f.user(api, "stays", groupIds=[group["id"]])
    assert (await api.ok(DELETE_GROUP, id=group["id"]))["deletedGroupId"] == group["id"]
    data = await api("query($id: ID!) { user(id: $id) { groups { id } } }", id=user["id"])
    assert data["user"]["groups"] == []
    assert (await api(DELETE_GROUP, id=group["id"]))["groupDelete"]["userErrors"][0]["code"] == "NOT_FOUND"


async def test_tag_create_validates_key_type_and_allowed_values(api: Api) -> None:
    folder = await api.ok("mutation { tagGroupCreate(input: {name: \"Profile\"}) { tagGroup { id name }"
                          " userErrors { code } } }")
    tag = (await api.ok(f.CREATE_TAG, input={"key": "vip", "name": "VIP", "type": "BOOLEAN",
                                             "tagGroupId": folder["tagGroup"]["id"]}))["tag"]
    assert tag["tagGroup"]["name"] == "Profile"
    cases = [({"key": "Bad Key", "name": "x", "type": "TEXT"}, "INVALID_KEY"),
             ({"key": "vip", "name": "x", "type": "TEXT"}, "KEY_TAKEN"),
             ({"key": "colors", "name": "x", "type": "MULTI_VALUE"}, "ALLOWED_VALUES_REQUIRED"),
             ({"key": "n", "name": "x", "type": "NUMBER", "allowedValues": ["1"]}, "INVALID_ALLOWED_VALUES"),
             ({"key": "t", "name": " ", "type": "TEXT"}, "NAME_REQUIRED")]
    for data, code in cases:
        result = await api(f.CREATE_TAG, input=data)
        assert result["tagCreate"]["userErrors"][0]["code"] == code, data
    groups = await api("{ tagGroups { name tags { key } } tags { key type } }")
    assert groups["tagGroups"] == [{"name": "Profile", "tags": [{"key": "vip"}]}]
    assert groups["tags"] == [{"key": "vip", "type": "BOOLEAN"}]


async def test_tag_values_are_validated_against_the_type(api: Api) -> None:
    await f.tag(api, "colors", "MULTI_VALUE", ["red", "blue"])
    await f.tag(api, "born", "DATE")
    await f.tag(api, "vip", "BOOLEAN")
    user = await f.user(api, "t", tags=[{"key": "colors", "values": ["red", "blue", "red"]},
                                        {"key": "born", "values": ["2001-02-03"]}, {"key": "vip", "values": ["Yes"]}])
    assert user["tags"] == [{"key": "born", "values": ["2001-02-03"], "locked": True, "source": "MANUAL"},
                            {"key": "colors", "values": ["blue", "red"], "locked": True, "source": "MANUAL"},
                            {"key": "vip", "values": ["true"], "locked": True, "source": "MANUAL"}]
    for tags in ([{"key": "colors", "values": ["green"]}], [{"key": "born", "values": ["03/02/2001"]}],
                 [{"key": "vip", "values": ["maybe"]}], [{"key": "vip", "values": []}]):
        data = await api(f.UPDATE_USER, input={"id": user["id"], "tags": tags})
        assert data["userUpdate"]["userErrors"][0]["code"] == "INVALID_TAG_VALUE", tags
    data = await api(f.UPDATE_USER, input={"id": user["id"], "tags": [{"key": "nope", "values": ["x"]}]})
    assert data["userUpdate"]["userErrors"][0]["code"] == "UNKNOWN_TAG"
    one = await api("query($id: ID!) { user(id: $id) { tag(key: \"vip\") { values } none: tag(key: \"x\") { values }"
                    " tags(keys: [\"born\"]) { key } } }", id=user["id"])
    assert one["user"] == {"tag": {"values": ["true"]}, "none": None, "tags": [{"key": "born"}]}


async def test_tag_update_refuses_removing_values_in_use_and_delete_drops_values(api: Api) -> None:
    tag = await f.tag(api, "colors", "MULTI_VALUE", ["red", "blue"])
    user = await f.user(api, "t", tags=[{"key": "colors", "values": ["red"]}])
    refused = await api(UPDATE_TAG, input={"id": tag["id"], "allowedValues": ["blue"]})
    assert refused["tagUpdate"]["userErrors"][0]["code"] == "VALUES_IN_USE"
    ok = await api.ok(UPDATE_TAG, input={"id": tag["id"], "name": "Colours", "allowedValues": ["red", "green"]})
    assert ok["tag"]["name"] == "Colours" and ok["tag"]["allowedValues"] == ["red", "green"]
    assert (await api.ok(DELETE_TAG, id=tag["id"]))["deletedTagId"] == tag["id"]
    data = await api("query($id: ID!) { user(id: $id) { tags { key } } }", id=user["id"])
    assert data["user"]["tags"] == []
    assert (await api(DELETE_TAG, id=tag["id"]))["tagDelete"]["userErrors"][0]["code"] == "NOT_FOUND"
