"""No N+1 on a users page, and the request-shape limits (depth, aliases, masking in production)."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from app import create_app
from settings import Settings
from tests import factories as f
from tests.conftest import Api

PAGE = """query($g: [ID!]) { users(first: 50, filter: {groupIds: $g, tags: [{key: "tier", op: EXISTS}]}) {
  totalCount edges { cursor node { id username displayName gender memberLevel createdAt lastActivityAt
    identities { type value source encryption } groups { id name memberCount } tags { key values }
    tier: tag(key: "tier") { values } } } pageInfo { hasNextPage endCursor } } }"""


async def test_users_page_with_all_nested_fields_costs_a_constant_number_of_statements(
        api: Api, statements: list[str]) -> None:
    await f.tag(api, "tier")
    groups = [await f.group(api, f"G{i}") for i in range(3)]
    for i in range(50):
        await f.user(api, f"user{i}", phone=f"+86130111{i:05d}", email=f"u{i}@example.com",
                     groupIds=[g["id"] for g in groups], tags=[{"key": "tier", "values": [f"t{i % 3}"]}])
    statements.clear()
    data = await api(PAGE, g=[groups[0]["id"]])
    edges = data["users"]["edges"]
    assert len(edges) == 50 and data["users"]["totalCount"] == 50
    assert all(len(e["node"]["identities"]) == 2 and len(e["node"]["groups"]) == 3 for e in edges)
    assert all(e["node"]["groups"][0]["memberCount"] == 50 for e in edges)
    # auth, tag definitions, page, count, identities, groups, member counts, tag values
    assert len(statements) <= 8, statements


async def test_query_deeper_than_the_limit_is_rejected(api: Api) -> None:
    deep = "{ node(id: \"x\") { ... on TagGroup { tags { tagGroup { tags { tagGroup { tags { tagGroup { tags {" \
           " tagGroup { tags { tagGroup { name } } } } } } } } } } } } }"
    body = await api.raw(deep)
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


async def test_too_many_aliases_are_rejected(api: Api) -> None:
    query = "{ " + " ".join(f"a{i}: viewer {{ role }}" for i in range(31)) + " }"
    body = await api.raw(query)
    assert "aliases" in body["errors"][0]["message"]


async def test_production_masks_unexpected_errors_but_not_validation(database_url: str, redis_url: str,
                                                                      api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(database_url, redis_url, Settings(environment="production"))
    from resolvers import workspace

    async def broken(*_: Any) -> None:
        raise RuntimeError("secret internals")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://roster") as client:
        headers = {"Authorization": f"Bearer {api.token}"}
        monkeypatch.setattr(workspace, "_workspace_row", broken)
        body = (await client.post("/graphql", json={"query": "{ viewer { role } }"}, headers=headers)).json()
        assert body["errors"][0]["message"] == "Unexpected error."
        body = (await client.post("/graphql", json={"query": "{ nope }"}, headers=headers)).json()
        assert "nope" in body["errors"][0]["message"]
