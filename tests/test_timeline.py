"""The user timeline (seed 003): noteAdd, activityRecord, User.activities, and lastActivityAt following them."""
from __future__ import annotations

import datetime as dt
from typing import Any

from models.enums import Role
from tests import factories as f
from tests.conftest import Api, make_workspace, other_key

ACTIVITY = "activity { id kind occurredAt payload actor user { username } } userErrors { field message code }"
NOTE_ADD = f"mutation($input: NoteAddInput!) {{ noteAdd(input: $input) {{ {ACTIVITY} }} }}"
RECORD = f"mutation($input: ActivityRecordInput!) {{ activityRecord(input: $input) {{ {ACTIVITY} }} }}"
TIMELINE = """query($id: ID!, $kinds: [ActivityKind!], $first: Int, $after: String) { user(id: $id) {
  lastActivityAt activities(kinds: $kinds, first: $first, after: $after) {
    totalCount edges { cursor node { id kind occurredAt payload } }
    pageInfo { hasNextPage hasPreviousPage endCursor } } } }"""
USERS_BY_ACTIVITY = """query($filter: UserFilter) {
  users(filter: $filter, orderBy: {field: LAST_ACTIVITY_AT, direction: DESC}) { edges { node { username } } } }"""


def at(day: int, hour: int = 12) -> str:
    return dt.datetime(2024, 3, day, hour, tzinfo=dt.UTC).isoformat()


async def record(api: Api, user_id: str, kind: str = "MESSAGE", occurred_at: str | None = None,
                 payload: Any = None) -> dict[str, Any]:
    data = await api(RECORD, input={"userId": user_id, "kind": kind, "occurredAt": occurred_at, "payload": payload})
    return data["activityRecord"]


async def timeline(api: Api, user_id: str, **kw: Any) -> dict[str, Any]:
    return (await api(TIMELINE, id=user_id, **kw))["user"]


async def test_note_add_puts_the_note_on_the_timeline_with_the_caller_as_actor(api: Api) -> None:
    user = await f.user(api, "li")
    payload = await api.ok(NOTE_ADD, input={"userId": user["id"], "body": "  Called back, wants the gold plan  "})
    note = payload["activity"]
    assert note["kind"] == "NOTE" and note["payload"] == {"body": "Called back, wants the gold plan"}
    assert note["actor"].startswith("apikey:") and note["user"] == {"username": "li"}
    seen = await timeline(api, user["id"])
    assert [e["node"]["id"] for e in seen["activities"]["edges"]] == [note["id"]]
    assert seen["lastActivityAt"] == note["occurredAt"]


async def test_note_add_needs_a_body_of_at_most_ten_thousand_characters(api: Api) -> None:
    user = await f.user(api, "li")
    data = await api(NOTE_ADD, input={"userId": user["id"], "body": "   "})
    assert data["noteAdd"]["userErrors"] == [{"field": ["body"], "message": "a note needs a body",
                                             "code": "BODY_REQUIRED"}]
    data = await api(NOTE_ADD, input={"userId": user["id"], "body": "x" * 10_001})
    assert data["noteAdd"]["userErrors"][0]["code"] == "BODY_TOO_LONG"
    await api.ok(NOTE_ADD, input={"userId": user["id"], "body": "x" * 10_000})
    assert (await timeline(api, user["id"]))["activities"]["totalCount"] == 1


async def test_activity_record_keeps_messages_media_and_tickets_from_other_systems(api: Api) -> None:
    user = await f.user(api, "li")
    message = await record(api, user["id"], "MESSAGE", at(1), {"channel": "WHATSAPP", "text": "hi", "inbound": True})
    assert message["userErrors"] == []
    assert message["activity"]["payload"] == {"channel": "WHATSAPP", "text": "hi", "inbound": True}
    assert message["activity"]["occurredAt"] == at(1)
    await record(api, user["id"], "MEDIA", at(2), {"url": "https://cdn.example.com/a.jpg", "mime": "image/jpeg"})
    await record(api, user["id"], "TICKET", at(3), {"number": "T-17", "status": "OPEN"})
    kinds = [e["node"]["kind"] for e in (await timeline(api, user["id"]))["activities"]["edges"]]
    assert kinds == ["TICKET", "MEDIA", "MESSAGE"]


async def test_activity_record_without_occurred_at_or_payload_happens_now_with_an_empty_payload(api: Api) -> None:
    user = await f.user(api, "li")
    before = dt.datetime.now(dt.UTC)
    activity = (await record(api, user["id"], "TICKET"))["activity"]
    assert activity["payload"] == {}
    assert before - dt.timedelta(seconds=1) <= dt.datetime.fromisoformat(activity["occurredAt"])


async def test_activity_record_refuses_kinds_roster_records_itself(api: Api) -> None:
    user = await f.user(api, "li")
    for kind in ("PROFILE_CHANGE", "TAG_CHANGE", "GROUP_CHANGE", "IMPORT", "MERGE"):
        errors = (await record(api, user["id"], kind, at(1)))["userErrors"]
        assert errors[0]["code"] == "INVALID_KIND" and errors[0]["field"] == ["kind"], kind
    assert (await timeline(api, user["id"]))["activities"]["totalCount"] == 0


async def test_activity_record_refuses_the_future_but_tolerates_a_little_clock_skew(api: Api) -> None:
    user = await f.user(api, "li")
    now = dt.datetime.now(dt.UTC)
    errors = (await record(api, user["id"], "MESSAGE", (now + dt.timedelta(hours=1)).isoformat()))["userErrors"]
    assert errors == [{"field": ["occurredAt"], "message": "occurredAt is in the future", "code": "INVALID_VALUE"}]
    assert (await record(api, user["id"], "MESSAGE", (now + dt.timedelta(minutes=1)).isoformat()))["userErrors"] == []


async def test_activity_record_payload_must_be_a_json_object(api: Api) -> None:
    user = await f.user(api, "li")
    errors = (await record(api, user["id"], "MESSAGE", at(1), ["not", "an", "object"]))["userErrors"]
    assert errors[0]["code"] == "INVALID_VALUE" and errors[0]["field"] == ["payload"]
    errors = (await record(api, user["id"], "MESSAGE", at(1), {"text": "x" * 70_000}))["userErrors"]
    assert errors[0]["code"] == "PAYLOAD_TOO_LARGE"


async def test_recording_on_an_unknown_or_malformed_user_is_a_user_error(api: Api) -> None:
    errors = (await record(api, "VXNlcjo5OTk5", "MESSAGE", at(1)))["userErrors"]  # User:9999
    assert errors[0]["code"] == "NOT_FOUND" and errors[0]["field"] == ["userId"]
    data = await api(NOTE_ADD, input={"userId": "bm9wZQ", "body": "hello"})
    assert data["noteAdd"]["userErrors"][0]["code"] == "INVALID_ID"


async def test_activities_page_newest_first_through_equal_timestamps(api: Api) -> None:
    user = await f.user(api, "li")
    recorded = [(await record(api, user["id"], "MESSAGE", at(day), {"n": n}))["activity"]
                for n, day in enumerate([1, 3, 3, 2, 3])]
    seen, after, pages = [], None, 0
    while True:
        page = (await timeline(api, user["id"], first=2, after=after))["activities"]
        assert page["totalCount"] == 5 and page["pageInfo"]["hasPreviousPage"] == (after is not None)
        seen += [e["node"]["payload"]["n"] for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [4, 2, 1, 3, 0] and pages == 3  # by occurredAt, then newest recorded first
    assert len({a["id"] for a in recorded}) == 5


async def test_activities_filter_by_kind(api: Api) -> None:
    user = await f.user(api, "li")
    await record(api, user["id"], "MESSAGE", at(1))
    await record(api, user["id"], "TICKET", at(2))
    await api.ok(NOTE_ADD, input={"userId": user["id"], "body": "note"})
    page = (await timeline(api, user["id"], kinds=["MESSAGE", "NOTE"]))["activities"]
    assert [e["node"]["kind"] for e in page["edges"]] == ["NOTE", "MESSAGE"] and page["totalCount"] == 2


async def test_activities_also_show_the_changes_roster_recorded(api: Api) -> None:
    user = await f.user(api, "li")
    await api.ok(f.UPDATE_USER, input={"id": user["id"], "city": "Hangzhou"})
    kinds = [e["node"]["kind"] for e in (await timeline(api, user["id"]))["activities"]["edges"]]
    assert kinds == ["PROFILE_CHANGE"]


async def test_a_bad_cursor_or_page_size_is_a_graphql_error(api: Api) -> None:
    user = await f.user(api, "li")
    body = await api.raw(TIMELINE, {"id": user["id"], "after": "garbage"})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
    body = await api.raw(TIMELINE, {"id": user["id"], "first": 0})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_PAGE_SIZE"


async def test_last_activity_at_follows_recorded_activities_and_never_goes_back(api: Api) -> None:
    old, busy, quiet = await f.user(api, "old"), await f.user(api, "busy"), await f.user(api, "quiet")
    await record(api, old["id"], "MESSAGE", at(1))
    await record(api, busy["id"], "MESSAGE", at(5))
    await record(api, busy["id"], "TICKET", at(2))  # an older activity arriving late
    assert (await timeline(api, busy["id"]))["lastActivityAt"] == at(5)
    assert (await timeline(api, quiet["id"]))["lastActivityAt"] is None
    names = [e["node"]["username"] for e in (await api(USERS_BY_ACTIVITY))["users"]["edges"]]
    assert names == ["busy", "old", "quiet"]
    since = (await api(USERS_BY_ACTIVITY, filter={"lastActivityAfter": at(3)}))["users"]["edges"]
    assert [e["node"]["username"] for e in since] == ["busy"]
    before = (await api(USERS_BY_ACTIVITY, filter={"lastActivityBefore": at(3)}))["users"]["edges"]
    assert [e["node"]["username"] for e in before] == ["old"]


async def test_reading_and_recording_need_the_right_permissions(api: Api) -> None:
    user = await f.user(api, "li")
    analyst = await other_key(api, Role.ANALYST)
    body = await analyst.raw(NOTE_ADD, {"input": {"userId": user["id"], "body": "hi"}})
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    body = await analyst.raw(RECORD, {"input": {"userId": user["id"], "kind": "MESSAGE"}})
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    operator = await other_key(api, Role.OPERATOR)
    await operator.ok(NOTE_ADD, input={"userId": user["id"], "body": "hi"})
    assert (await timeline(analyst, user["id"]))["activities"]["totalCount"] == 1


async def test_partner_sees_a_timeline_only_with_its_grant(api: Api) -> None:
    user = await f.user(api, "li")
    await api.ok(NOTE_ADD, input={"userId": user["id"], "body": "private"})
    partner = await other_key(api, Role.PARTNER)
    assert (await timeline(partner, user["id"]))["activities"]["edges"] == []
    granted = await other_key(api, Role.PARTNER, ["field:activities:read"])
    assert (await timeline(granted, user["id"]))["activities"]["totalCount"] == 1


async def test_another_workspace_cannot_read_or_record_on_our_users(api: Api) -> None:
    user = await f.user(api, "li")
    await api.ok(NOTE_ADD, input={"userId": user["id"], "body": "ours"})
    other = await make_workspace(api.client, name="Other")
    assert (await other(TIMELINE, id=user["id"]))["user"] is None
    data = await other(NOTE_ADD, input={"userId": user["id"], "body": "theirs"})
    assert data["noteAdd"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await record(other, user["id"], "MESSAGE", at(9)))["userErrors"][0]["code"] == "NOT_FOUND"
    seen = await timeline(api, user["id"])
    assert seen["activities"]["totalCount"] == 1 and seen["lastActivityAt"] != at(9)
