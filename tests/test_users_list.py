"""users(filter, first, after, orderBy): every filter field, keyset pages and totalCount."""
from __future__ import annotations

from typing import Any

from tests import factories as f
from tests.conftest import Api

LIST = """query($filter: UserFilter, $first: Int, $after: String, $orderBy: UserOrder) {
  users(filter: $filter, first: $first, after: $after, orderBy: $orderBy) {
    totalCount edges { cursor node { id username } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""


async def names(api: Api, **filter_: Any) -> list[str]:
    data = await api(LIST, filter=filter_, first=100)
    return sorted(e["node"]["username"] for e in data["users"]["edges"])


async def test_keyset_pages_walk_every_user_once_in_order(api: Api) -> None:
    for i in range(7):
        await f.user(api, f"u{i}")
    seen, after = [], None
    while True:
        page = (await api(LIST, first=3, after=after, orderBy={"field": "ID", "direction": "ASC"}))["users"]
        seen += [e["node"]["username"] for e in page["edges"]]
        assert page["totalCount"] == 7
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"u{i}" for i in range(7)]
    newest_first = (await api(LIST, first=2))["users"]["edges"]
    assert [e["node"]["username"] for e in newest_first] == ["u6", "u5"]


async def test_order_by_display_name_pages_through_ties(api: Api) -> None:
    for i, name in enumerate(["b", "a", "b", "c", "a"]):
        await f.user(api, f"u{i}", displayName=name)
    order = {"field": "DISPLAY_NAME", "direction": "ASC"}
    first = (await api(LIST, first=2, orderBy=order))["users"]
    rest = (await api(LIST, first=10, orderBy=order, after=first["pageInfo"]["endCursor"]))["users"]
    assert [e["node"]["username"] for e in first["edges"] + rest["edges"]] == ["u1", "u4", "u0", "u2", "u3"]


async def test_filters_by_group_member_level_account_type_and_query(api: Api) -> None:
    vip, staff = await f.group(api, "VIP"), await f.group(api, "Staff")
    await f.user(api, "alice", phone="+8613011110001", displayName="Alice Li", memberLevel="gold", groupIds=[vip["id"]])
    await f.user(api, "bob", email="bob@example.com", memberLevel="silver", groupIds=[vip["id"], staff["id"]])
    await f.user(api, "carol", accountType="ADMIN", groupIds=[staff["id"]])
    assert await names(api, groupIds=[vip["id"]]) == ["alice", "bob"]
    assert await names(api, notInGroupIds=[staff["id"]]) == ["alice"]
    assert await names(api, memberLevels=["gold"]) == ["alice"]
    assert await names(api, accountTypes=["ADMIN"]) == ["carol"]
    assert await names(api, sources=["INTERNAL"]) == ["alice", "bob", "carol"]
    assert await names(api, query="ali") == ["alice"]
    assert await names(api, query="13011110001") == ["alice"]
    assert await names(api, query="BOB@example.com") == ["bob"]
    data = await api(LIST, filter={"groupIds": [vip["id"]]})
    assert data["users"]["totalCount"] == 2


async def test_filters_by_tags_with_every_operator(api: Api) -> None:
    await f.tag(api, "tier")
    await f.tag(api, "interests", "MULTI_VALUE", ["golf", "tea", "wine"])
    await f.tag(api, "spend", "NUMBER")
    await f.user(api, "a", tags=[{"key": "tier", "values": ["gold"]}, {"key": "interests", "values": ["golf", "tea"]},
                                 {"key": "spend", "values": ["120.5"]}])
    await f.user(api, "b", tags=[{"key": "tier", "values": ["silver"]}, {"key": "interests", "values": ["tea"]},
                                 {"key": "spend", "values": ["80"]}])
    await f.user(api, "c")
    assert await names(api, tags=[{"key": "tier", "op": "EQ", "values": ["gold"]}]) == ["a"]
    assert await names(api, tags=[{"key": "tier", "op": "IN", "values": ["gold", "silver"]}]) == ["a", "b"]
    assert await names(api, tags=[{"key": "interests", "op": "CONTAINS", "values": ["golf", "tea"]}]) == ["a"]
    assert await names(api, tags=[{"key": "interests", "op": "IN", "values": ["tea"]}]) == ["a", "b"]
    assert await names(api, tags=[{"key": "tier", "op": "EXISTS"}]) == ["a", "b"]
    assert await names(api, tags=[{"key": "tier", "op": "MISSING"}]) == ["c"]
    assert await names(api, tags=[{"key": "spend", "op": "GT", "values": ["100"]}]) == ["a"]
    assert await names(api, tags=[{"key": "spend", "op": "LT", "values": ["100"]}]) == ["b"]


async def test_filters_by_creation_and_activity_ranges(api: Api) -> None:
    await f.user(api, "early")
    page = (await api(LIST, first=1))["users"]["edges"][0]["node"]
    created = (await api("query($id: ID!) { user(id: $id) { createdAt } }", id=page["id"]))["user"]["createdAt"]
    assert await names(api, createdAfter=created) == ["early"]
    assert await names(api, createdBefore=created) == []
    assert await names(api, lastActivityAfter="2000-01-01T00:00:00+00:00") == []


async def test_bad_filter_arguments_are_clear_errors(api: Api) -> None:
    body = await api.raw(LIST, {"filter": {"tags": [{"key": "nope", "op": "EXISTS"}]}})
    assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_TAG"
    await f.tag(api, "spend", "NUMBER")
    body = await api.raw(LIST, {"filter": {"tags": [{"key": "spend", "op": "GT", "values": ["lots"]}]}})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TAG_VALUE"
    body = await api.raw(LIST, {"after": "garbage!"})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"
    body = await api.raw(LIST, {"first": 1000})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_PAGE_SIZE"
    body = await api.raw(LIST, {"filter": {"groupIds": ["not-an-id"]}})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_ID"


async def test_pages_filtered_by_group_and_tag_walk_every_match_once(api: Api) -> None:
    vip = await f.group(api, "VIP")
    await f.tag(api, "tier")
    expected = []
    for i in range(9):
        in_group = i % 3 != 0
        tier = "gold" if i % 2 else "silver"
        await f.user(api, f"u{i}", groupIds=[vip["id"]] if in_group else [], tags=[{"key": "tier", "values": [tier]}])
        if in_group and tier == "gold":
            expected.append(f"u{i}")
    flt = {"groupIds": [vip["id"]], "tags": [{"key": "tier", "op": "IN", "values": ["gold"]}]}
    for direction in ("ASC", "DESC"):
        seen, after = [], None
        while True:
            page = (await api(LIST, filter=flt, first=1, after=after,
                              orderBy={"field": "ID", "direction": direction}))["users"]
            assert page["totalCount"] == len(expected)
            seen += [e["node"]["username"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == (expected if direction == "ASC" else expected[::-1])
