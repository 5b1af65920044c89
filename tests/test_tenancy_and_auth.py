"""Auth, roles, PII masking, and strict workspace isolation through every query and mutation."""
from __future__ import annotations

import httpx

from models.enums import Role
from tests import factories as f
from tests.conftest import Api, make_workspace, other_key


async def test_requests_without_a_valid_key_get_401(client: httpx.AsyncClient, api: Api) -> None:
    query = {"query": "{ viewer { role } }"}
    assert (await client.post("/graphql", json=query)).status_code == 401
    bad = await client.post("/graphql", json=query, headers={"Authorization": "Bearer rk_1_nope"})
    assert bad.status_code == 401 and "API key" in bad.json()["errors"][0]["message"]
    assert (await client.post("/graphql", json=query, headers={"Authorization": f"Bearer {api.token}"})).status_code == 200


async def test_graphiql_page_is_served_to_browsers(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_form_posts_without_preflight_header_are_refused(client: httpx.AsyncClient, api: Api) -> None:
    response = await client.post("/graphql", data={"query": "{ viewer { role } }"},
                                 headers={"Authorization": f"Bearer {api.token}"})
    assert response.status_code == 400


async def test_oversized_request_body_gets_413(client: httpx.AsyncClient, api: Api, settings) -> None:
    big = "x" * (settings.max_request_bytes + 1)
    response = await client.post("/graphql", json={"query": "{ viewer { role } }", "variables": {"x": big}},
                                 headers={"Authorization": f"Bearer {api.token}"})
    assert response.status_code == 413


async def test_analyst_sees_masked_pii_and_cannot_write(api: Api) -> None:
    await f.user(api, "li", phone="+8613011111111", email="li.lei@example.com")
    analyst = await other_key(api, Role.ANALYST)
    data = await analyst("{ users { edges { node { identities { type value masked } } } } }")
    identities = {i["type"]: i for i in data["users"]["edges"][0]["node"]["identities"]}
    assert identities["PHONE"] == {"type": "PHONE", "value": "+86 130****1111", "masked": True}
    assert identities["EMAIL"]["value"] == "l***@example.com"
    body = await analyst.raw(f.CREATE_GROUP, {"input": {"name": "x"}})
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


async def test_identity_read_grant_unmasks_one_type(api: Api) -> None:
    await f.user(api, "li", phone="+8613011111111", email="li.lei@example.com")
    analyst = await other_key(api, Role.ANALYST, ["identity:PHONE:read"])
    data = await analyst("{ users { edges { node { identities { type value } } } } }")
    values = {i["type"]: i["value"] for i in data["users"]["edges"][0]["node"]["identities"]}
    assert values == {"PHONE": "+8613011111111", "EMAIL": "l***@example.com"}


async def test_partner_reads_only_granted_fields_identities_and_tags(api: Api) -> None:
    await f.tag(api, "vip", "BOOLEAN")
    await f.tag(api, "secret")
    await f.user(api, "p", phone="+8613011111111", email="p@example.com", nickname="Nick", city="Hangzhou",
                 tags=[{"key": "vip", "values": ["true"]}, {"key": "secret", "values": ["s"]}])
    partner = await other_key(api, Role.PARTNER, ["field:nickname:read", "identity:EMAIL:read", "tag:vip:read"])
    node = (await partner("{ users { edges { node { nickname city identities { type value } tags { key } } } } }")
            )["users"]["edges"][0]["node"]
    assert node == {"nickname": "Nick", "city": None, "identities": [{"type": "EMAIL", "value": "p@example.com"}],
                    "tags": [{"key": "vip"}]}


async def test_operator_cannot_create_admin_accounts(api: Api) -> None:
    operator = await other_key(api, Role.OPERATOR)
    body = await operator.raw(f.CREATE_USER, {"input": {"username": "boss", "accountType": "ADMIN"}})
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert (await operator.ok(f.CREATE_USER, input={"username": "staff"}))["user"]["username"] == "staff"


async def test_workspace_a_can_neither_read_nor_change_workspace_b(client: httpx.AsyncClient, api: Api) -> None:
    b = await make_workspace(client, name="Beta")
    b_group = await f.group(b, "B only")
    b_tag = await f.tag(b, "btag")
    b_folder = (await b.ok("mutation { tagGroupCreate(input: {name: \"B\"}) { tagGroup { id } userErrors { code } } }"
                           ))["tagGroup"]
    b_user = await f.user(b, "bob", phone="+8613011112222", groupIds=[b_group["id"]],
                          tags=[{"key": "btag", "values": ["x"]}])
    b_identity = b_user["identities"][0]["id"]
    a = api
    a_user = await f.user(a, "alice")
    a_group = await f.group(a, "A group")

    # Reads: nothing of B is visible to A.
    for global_id in (b_user["id"], b_group["id"], b_tag["id"], b_folder["id"], b_identity):
        assert (await a("query($id: ID!) { node(id: $id) { id } }", id=global_id))["node"] is None
    assert (await a("query($id: ID!) { user(id: $id) { id } }", id=b_user["id"]))["user"] is None
    assert (await a("query($id: ID!) { group(id: $id) { id } }", id=b_group["id"]))["group"] is None
    by_identity = await a("{ userByIdentity(type: PHONE, value: \"+8613011112222\") { id } }")
    assert by_identity["userByIdentity"] is None
    lists = await a("{ users { totalCount edges { node { username } } } groups { totalCount } tags { key }"
                    " tagGroups { name } }")
    assert lists["users"]["totalCount"] == 1 and lists["groups"]["totalCount"] == 1
    assert lists["tags"] == [] and lists["tagGroups"] == []
    filtered = await a("query($g: [ID!]) { users(filter: {groupIds: $g}) { totalCount } }", g=[b_group["id"]])
    assert filtered["users"]["totalCount"] == 0
    body = await a.raw("{ users(filter: {tags: [{key: \"btag\", op: EXISTS}]}) { totalCount } }")
    assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_TAG"

    # Writes: every mutation on B's objects fails and B is unchanged.
    failures = [
        (f.UPDATE_USER, {"input": {"id": b_user["id"], "displayName": "hacked"}}),
        ("mutation($i: [ID!]!) { usersMerge(input: {userIds: $i}) { userErrors { code } } }",
         {"i": [a_user["id"], b_user["id"]]}),
        ("mutation($u: ID!) { identityAdd(input: {userId: $u, identity: {type: EMAIL, value: \"x@y.com\"}})"
         " { userErrors { code } } }", {"u": b_user["id"]}),
        ("mutation($id: ID!) { identityRemove(input: {id: $id}) { userErrors { code } } }", {"id": b_identity}),
        ("mutation($id: ID!) { groupUpdate(input: {id: $id, name: \"hacked\"}) { userErrors { code } } }",
         {"id": b_group["id"]}),
        ("mutation($id: ID!) { groupDelete(input: {id: $id}) { userErrors { code } } }", {"id": b_group["id"]}),
        ("mutation($id: ID!) { tagUpdate(input: {id: $id, name: \"hacked\"}) { userErrors { code } } }",
         {"id": b_tag["id"]}),
        ("mutation($id: ID!) { tagDelete(input: {id: $id}) { userErrors { code } } }", {"id": b_tag["id"]}),
        (f.CREATE_USER, {"input": {"username": "x", "groupIds": [b_group["id"]]}}),
        (f.CREATE_TAG, {"input": {"key": "k", "name": "k", "type": "TEXT", "tagGroupId": b_folder["id"]}}),
        ("mutation($g: [ID!]!) { contactsUpsert(input: {groupIds: $g, contacts: [{phone: \"13011113333\"}]})"
         " { userErrors { code } } }", {"g": [b_group["id"]]}),
    ]
    for mutation, variables in failures:
        data = await a(mutation, variables)
        (payload,) = data.values()
        assert payload["userErrors"] and payload["userErrors"][0]["code"] in ("NOT_FOUND", "GROUP_NOT_FOUND"), mutation
    # A phone B holds is free in A: A gets its own user, B's stays.
    await f.user(a, "alice2", phone="+8613011112222")
    after = await b("query($id: ID!) { user(id: $id) { displayName identities { value } groups { name } tags { key } }"
                    " groups { totalCount } tags { name } }", id=b_user["id"])
    assert after["user"] == {"displayName": None, "identities": [{"value": "+8613011112222"}],
                             "groups": [{"name": "B only"}], "tags": [{"key": "btag"}]}
    assert after["groups"]["totalCount"] == 1 and after["tags"] == [{"name": "Btag"}]
    assert a_group["name"] == "A group"
