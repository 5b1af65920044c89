"""workspaceSettingsUpdate, the user-list columns (seed 001) and usersDelete (seed 002)."""
from __future__ import annotations

from typing import Any

from models import db
from models.enums import Role
from tests import factories as f
from tests.conftest import Api, make_workspace, other_key

SETTINGS = "workspaceSettings { accountDeletionEnabled userListColumns defaultRegion }"
UPDATE = f"""mutation($input: WorkspaceSettingsUpdateInput!) {{ workspaceSettingsUpdate(input: $input) {{
  {SETTINGS} userErrors {{ field message code }} }} }}"""
COLUMNS = "{ userListColumns { key name type } }"
LIST_COLUMNS = """query($first: Int) { users(first: $first, orderBy: {field: ID, direction: ASC}) {
  edges { node { username listColumns { key values } } } } }"""
DELETE = """mutation($ids: [ID!]!) { usersDelete(input: {target: {ids: $ids}}) {
  deletedCount deletedUserIds userErrors { field message code } } }"""
DELETE_MATCHING = """mutation($filter: UserFilter!) { usersDelete(input: {target: {filter: $filter}}) {
  deletedCount deletedUserIds userErrors { field message code } } }"""
USER = "query($id: ID!) { user(id: $id) { id username } }"
BY_PHONE = "query($v: String!) { userByIdentity(type: PHONE, value: $v) { username } }"


async def enable_deletion(api: Api) -> None:
    await api.ok(UPDATE, input={"accountDeletionEnabled": True})


async def audit_entries(api: Api, action: str) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT target, details FROM audit_log WHERE workspace_id = $1 AND action = $2 ORDER BY id",
                          api.workspace_id, action)
    return [{"target": r["target"], **db.json_value(r["details"])} for r in rows]


# --- settings -------------------------------------------------------------------------------------------------


async def test_settings_start_with_deletion_disabled_and_no_columns(api: Api) -> None:
    settings = (await api(f"{{ {SETTINGS} }}"))["workspaceSettings"]
    assert settings == {"accountDeletionEnabled": False, "userListColumns": [], "defaultRegion": "CN"}
    assert (await api(COLUMNS))["userListColumns"] == []


async def test_admin_updates_settings_and_each_change_is_audited(api: Api) -> None:
    await f.tag(api, "vip", "BOOLEAN")
    await f.tag(api, "city")
    payload = await api.ok(UPDATE, input={"accountDeletionEnabled": True, "userListColumns": ["vip", "city"],
                                          "defaultRegion": "us"})
    expected = {"accountDeletionEnabled": True, "userListColumns": ["vip", "city"], "defaultRegion": "US"}
    assert payload["workspaceSettings"] == expected
    assert (await api(f"{{ {SETTINGS} }}"))["workspaceSettings"] == expected
    entries = await audit_entries(api, "workspace.settings.update")
    assert {e["target"]: (e["old"], e["new"]) for e in entries} == {"accountDeletionEnabled": (False, True),
                                                                   "userListColumns": ([], ["vip", "city"]),
                                                                   "defaultRegion": ("CN", "US")}
    await api.ok(UPDATE, input={"userListColumns": ["vip", "city"]})  # no change, nothing to audit
    await api.ok(UPDATE, input={})
    assert len(await audit_entries(api, "workspace.settings.update")) == 3


async def test_settings_left_out_keep_their_values(api: Api) -> None:
    await f.tag(api, "vip")
    await api.ok(UPDATE, input={"userListColumns": ["vip"], "accountDeletionEnabled": True})
    payload = await api.ok(UPDATE, input={"defaultRegion": "GB", "accountDeletionEnabled": None})
    assert payload["workspaceSettings"] == {"accountDeletionEnabled": True, "userListColumns": ["vip"],
                                            "defaultRegion": "GB"}
    cleared = await api.ok(UPDATE, input={"userListColumns": []})
    assert cleared["workspaceSettings"]["userListColumns"] == []


async def test_default_region_parses_national_phone_numbers(api: Api) -> None:
    await api.ok(UPDATE, input={"defaultRegion": "US"})
    user = await f.user(api, "ann", phone="(201) 555-0123")
    assert user["identities"][0]["value"] == "+12015550123"


async def test_settings_update_refuses_unknown_tags_too_many_columns_and_unknown_regions(api: Api) -> None:
    await f.tag(api, "vip")
    data = await api(UPDATE, input={"userListColumns": ["vip", "shoe_size"]})
    assert data["workspaceSettingsUpdate"]["userErrors"] == [
        {"field": ["userListColumns", "1"], "message": "no tag with key 'shoe_size'", "code": "UNKNOWN_TAG"}]
    assert data["workspaceSettingsUpdate"]["workspaceSettings"] is None
    for i in range(21):
        await f.tag(api, f"t{i}")
    data = await api(UPDATE, input={"userListColumns": [f"t{i}" for i in range(21)]})
    assert data["workspaceSettingsUpdate"]["userErrors"][0]["code"] == "TOO_MANY_COLUMNS"
    await api.ok(UPDATE, input={"userListColumns": [f"t{i}" for i in range(20)]})
    for region in ("XX", "China", ""):
        data = await api(UPDATE, input={"defaultRegion": region, "accountDeletionEnabled": True})
        assert data["workspaceSettingsUpdate"]["userErrors"] == [{
            "field": ["defaultRegion"], "message": f"'{region}' is not a known phone region", "code": "INVALID_REGION"}]
    settings = (await api(f"{{ {SETTINGS} }}"))["workspaceSettings"]
    assert settings["defaultRegion"] == "CN" and settings["accountDeletionEnabled"] is False  # nothing applied


async def test_only_admins_change_settings(api: Api) -> None:
    for role in (Role.OPERATOR, Role.ANALYST):
        body = await (await other_key(api, role)).raw(UPDATE, {"input": {"accountDeletionEnabled": True}})
        assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert (await api(f"{{ {SETTINGS} }}"))["workspaceSettings"]["accountDeletionEnabled"] is False


# --- user-list columns ----------------------------------------------------------------------------------------


async def test_user_list_columns_are_the_configured_tags_in_order(api: Api) -> None:
    await f.tag(api, "vip", "BOOLEAN")
    await f.tag(api, "city")
    await f.tag(api, "tier")
    await api.ok(UPDATE, input={"userListColumns": ["vip", "city"]})
    assert (await api(COLUMNS))["userListColumns"] == [{"key": "vip", "name": "Vip", "type": "BOOLEAN"},
                                                       {"key": "city", "name": "City", "type": "TEXT"}]


async def test_a_deleted_column_tag_drops_out_of_the_columns(api: Api) -> None:
    vip = await f.tag(api, "vip")
    await f.tag(api, "city")
    await api.ok(UPDATE, input={"userListColumns": ["vip", "city"]})
    await api.ok("mutation($id: ID!) { tagDelete(input: {id: $id}) { userErrors { field message code } } }",
                 id=vip["id"])
    assert [t["key"] for t in (await api(COLUMNS))["userListColumns"]] == ["city"]


async def test_users_show_their_values_of_the_column_tags_in_column_order(api: Api) -> None:
    await f.tag(api, "vip", "BOOLEAN")
    await f.tag(api, "city")
    await f.tag(api, "tier")
    await f.user(api, "both", tags=[{"key": "city", "values": ["Hangzhou"]}, {"key": "vip", "values": ["true"]},
                                    {"key": "tier", "values": ["gold"]}])
    await f.user(api, "some", tags=[{"key": "city", "values": ["Beijing"]}])
    await f.user(api, "none")
    edges = (await api(LIST_COLUMNS))["users"]["edges"]
    assert [e["node"]["listColumns"] for e in edges] == [[], [], []]  # no columns configured yet
    await api.ok(UPDATE, input={"userListColumns": ["vip", "city"]})
    edges = (await api(LIST_COLUMNS))["users"]["edges"]
    assert {e["node"]["username"]: e["node"]["listColumns"] for e in edges} == {
        "both": [{"key": "vip", "values": ["true"]}, {"key": "city", "values": ["Hangzhou"]}],
        "some": [{"key": "city", "values": ["Beijing"]}],
        "none": []}


async def test_partner_sees_only_the_column_tags_it_may_read(api: Api) -> None:
    await f.tag(api, "vip")
    await f.tag(api, "secret")
    await f.user(api, "p", tags=[{"key": "vip", "values": ["y"]}, {"key": "secret", "values": ["s"]}])
    await api.ok(UPDATE, input={"userListColumns": ["secret", "vip"]})
    partner = await other_key(api, Role.PARTNER, ["tag:vip:read"])
    assert [t["key"] for t in (await partner(COLUMNS))["userListColumns"]] == ["vip"]
    edges = (await partner(LIST_COLUMNS))["users"]["edges"]
    assert edges[0]["node"]["listColumns"] == [{"key": "vip", "values": ["y"]}]


async def test_list_columns_on_a_page_of_fifty_users_cost_no_statement_per_user(
        api: Api, statements: list[str]) -> None:
    await f.tag(api, "vip")
    await f.tag(api, "city")
    for i in range(50):
        await f.user(api, f"user{i}", tags=[{"key": "city", "values": [f"c{i}"]}])
    await api.ok(UPDATE, input={"userListColumns": ["vip", "city"]})
    statements.clear()
    edges = (await api(LIST_COLUMNS, first=50))["users"]["edges"]
    assert len(edges) == 50 and all(e["node"]["listColumns"][0]["key"] == "city" for e in edges)
    # auth, page, workspace settings, tag values
    assert len(statements) <= 4, statements


# --- deletion -------------------------------------------------------------------------------------------------


async def test_deletion_is_refused_until_an_admin_enables_it(api: Api) -> None:
    user = await f.user(api, "li")
    data = await api(DELETE, ids=[user["id"]])
    assert data["usersDelete"]["userErrors"][0]["code"] == "DELETION_DISABLED"
    assert data["usersDelete"]["deletedCount"] == 0
    assert (await api(USER, id=user["id"]))["user"] is not None
    await enable_deletion(api)
    payload = await api.ok(DELETE, ids=[user["id"]])
    assert payload == {"deletedCount": 1, "deletedUserIds": [user["id"]], "userErrors": []}
    assert (await api(USER, id=user["id"]))["user"] is None
    await api.ok(UPDATE, input={"accountDeletionEnabled": False})
    other = await f.user(api, "wang")
    assert (await api(DELETE, ids=[other["id"]]))["usersDelete"]["userErrors"][0]["code"] == "DELETION_DISABLED"


async def test_deleting_users_frees_their_identities_and_leaves_their_groups(api: Api) -> None:
    vip = await f.group(api, "VIP")
    await f.tag(api, "tier")
    gone = await f.user(api, "gone", phone="+8613011112222", email="gone@example.com", groupIds=[vip["id"]],
                        tags=[{"key": "tier", "values": ["gold"]}])
    stays = await f.user(api, "stays", phone="+8613011113333", groupIds=[vip["id"]])
    await api.ok("mutation($id: ID!) { noteAdd(input: {userId: $id, body: \"hi\"}) {"
                 " userErrors { field message code } } }", id=gone["id"])
    await enable_deletion(api)
    payload = await api.ok(DELETE, ids=[gone["id"]])
    assert payload["deletedUserIds"] == [gone["id"]]
    group = (await api("query($id: ID!) { group(id: $id) { memberCount } }", id=vip["id"]))["group"]
    assert group["memberCount"] == 1
    assert (await api(BY_PHONE, v="13011112222"))["userByIdentity"] is None
    again = await f.user(api, "again", phone="13011112222", email="gone@example.com")  # no IDENTITY_TAKEN
    assert (await api(BY_PHONE, v="+8613011112222"))["userByIdentity"] == {"username": "again"}
    assert again["tags"] == [] and again["groups"] == []
    assert (await api(USER, id=stays["id"]))["user"]["username"] == "stays"
    assert (await api("query($id: ID!) { node(id: $id) { id } }", id=gone["id"]))["node"] is None


async def test_deleting_several_users_reports_only_the_ones_found_and_is_audited(api: Api) -> None:
    users = [await f.user(api, f"u{i}") for i in range(3)]
    await enable_deletion(api)
    ids = [users[0]["id"], users[2]["id"], "VXNlcjo5OTk5"]  # the last one is User:9999
    payload = await api.ok(DELETE, ids=ids)
    assert payload["deletedCount"] == 2 and sorted(payload["deletedUserIds"]) == sorted(ids[:2])
    remaining = (await api("{ users { edges { node { username } } } }"))["users"]["edges"]
    assert [e["node"]["username"] for e in remaining] == ["u1"]
    (entry,) = await audit_entries(api, "users.delete")
    assert entry["count"] == 2 and len(entry["ids"]) == 2


async def test_deletion_by_filter_removes_the_matching_users(api: Api) -> None:
    await f.user(api, "gold1", memberLevel="gold")
    await f.user(api, "gold2", memberLevel="gold")
    await f.user(api, "silver", memberLevel="silver")
    await enable_deletion(api)
    payload = await api.ok(DELETE_MATCHING, filter={"memberLevels": ["gold"]})
    assert payload["deletedCount"] == 2
    remaining = (await api("{ users { edges { node { username } } } }"))["users"]["edges"]
    assert [e["node"]["username"] for e in remaining] == ["silver"]


async def test_deletion_of_malformed_ids_is_a_user_error(api: Api) -> None:
    await enable_deletion(api)
    data = await api(DELETE, ids=["bm9wZQ"])
    assert data["usersDelete"]["userErrors"][0]["code"] == "INVALID_ID"


async def test_only_admins_delete_users(api: Api) -> None:
    user = await f.user(api, "li")
    await enable_deletion(api)
    operator = await other_key(api, Role.OPERATOR)
    body = await operator.raw(DELETE, {"ids": [user["id"]]})
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert (await api(USER, id=user["id"]))["user"] is not None


async def test_another_workspace_cannot_delete_our_users(api: Api) -> None:
    user = await f.user(api, "li", phone="+8613011112222")
    await enable_deletion(api)
    other = await make_workspace(api.client, name="Other")
    await enable_deletion(other)
    payload = await other.ok(DELETE, ids=[user["id"]])
    assert payload == {"deletedCount": 0, "deletedUserIds": [], "userErrors": []}
    payload = await other.ok(DELETE_MATCHING, filter={"query": "li"})
    assert payload["deletedCount"] == 0
    refused = (await other(DELETE_MATCHING, filter={}))["usersDelete"]
    assert refused["userErrors"][0]["code"] == "FILTER_REQUIRED"
    assert (await api(USER, id=user["id"]))["user"] == {"id": user["id"], "username": "li"}
    assert (await api(BY_PHONE, v="13011112222"))["userByIdentity"] == {"username": "li"}
