"""contactsUpsert: region + phone + name, duplicate policy, at least one group (seed 000)."""
from __future__ import annotations

from tests import factories as f
from tests.conftest import Api

UPSERT = """mutation($input: ContactsUpsertInput!) { contactsUpsert(input: $input) {
  users { id displayName country identities { type value } groups { name } }
  created updated skipped userErrors { field code message } } }"""


async def test_new_contacts_are_created_in_the_groups(api: Api) -> None:
    group = await f.group(api, "Leads")
    payload = await api.ok(UPSERT, input={"groupIds": [group["id"]], "contacts": [
        {"region": "CN", "phone": "130 1111 0001", "name": "Li"},
        {"region": "US", "phone": "(415) 555-2671", "name": "Sam"}]})
    assert payload["created"] == 2 and payload["updated"] == 0
    assert [u["identities"] for u in payload["users"]] == [[{"type": "PHONE", "value": "+8613011110001"}],
                                                          [{"type": "PHONE", "value": "+14155552671"}]]
    assert all(u["groups"] == [{"name": "Leads"}] for u in payload["users"])


async def test_overwrite_replaces_name_and_adds_groups_ignore_leaves_contact_unchanged(api: Api) -> None:
    first, second = await f.group(api, "First"), await f.group(api, "Second")
    await api.ok(UPSERT, input={"groupIds": [first["id"]], "contacts": [{"phone": "13011110001", "name": "Old"}]})
    ignored = await api.ok(UPSERT, input={"groupIds": [second["id"]], "duplicatePolicy": "IGNORE",
                                          "contacts": [{"phone": "+86 130 1111 0001", "name": "New"}]})
    assert ignored["skipped"] == 1 and ignored["users"][0]["displayName"] == "Old"
    assert ignored["users"][0]["groups"] == [{"name": "First"}]
    overwritten = await api.ok(UPSERT, input={"groupIds": [second["id"]], "duplicatePolicy": "OVERWRITE",
                                              "contacts": [{"phone": "13011110001", "name": "New"}]})
    assert overwritten["updated"] == 1 and overwritten["users"][0]["displayName"] == "New"
    assert overwritten["users"][0]["groups"] == [{"name": "First"}, {"name": "Second"}]
    assert (await api("{ users { totalCount } }"))["users"]["totalCount"] == 1


async def test_overwrite_keeps_a_name_edited_by_hand(api: Api) -> None:
    group = await f.group(api, "G")
    made = await api.ok(UPSERT, input={"groupIds": [group["id"]], "contacts": [{"phone": "13011110001", "name": "A"}]})
    await api.ok(f.UPDATE_USER, input={"id": made["users"][0]["id"], "displayName": "Edited"})
    again = await api.ok(UPSERT, input={"groupIds": [group["id"]], "contacts": [{"phone": "13011110001", "name": "B"}]})
    assert again["users"][0]["displayName"] == "Edited"


async def test_invalid_rows_are_reported_and_the_rest_proceed(api: Api) -> None:
    group = await f.group(api, "G")
    data = await api(UPSERT, input={"groupIds": [group["id"]], "contacts": [
        {"phone": "12", "name": "Bad"}, {"phone": "13011110002", "name": "Good"}]})
    payload = data["contactsUpsert"]
    assert payload["created"] == 1 and payload["users"][0] is None and payload["users"][1]["displayName"] == "Good"
    assert payload["userErrors"][0]["code"] == "INVALID_PHONE"
    assert payload["userErrors"][0]["field"] == ["contacts", "0", "phone"]


async def test_a_group_is_required_and_must_exist(api: Api) -> None:
    data = await api(UPSERT, input={"groupIds": [], "contacts": [{"phone": "13011110001"}]})
    assert data["contactsUpsert"]["userErrors"][0]["code"] == "GROUP_REQUIRED"
    data = await api(UPSERT, input={"groupIds": ["R3JvdXA6OTk5"], "contacts": [{"phone": "13011110001"}]})
    assert data["contactsUpsert"]["userErrors"][0]["code"] == "GROUP_NOT_FOUND"
    assert (await api("{ users { totalCount } }"))["users"]["totalCount"] == 0
