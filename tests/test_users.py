"""userCreate, userUpdate, user, userByIdentity, usersMerge, identityAdd/Remove."""
from __future__ import annotations

from tests import factories as f
from tests.conftest import Api

MERGE = """mutation($ids: [ID!]!) { usersMerge(input: {userIds: $ids}) {
  user { id username displayName city identities { type value } groups { name } tags { key values } }
  mergedUserIds userErrors { field code message } } }"""
IDENTITY_ADD = """mutation($input: IdentityAddInput!) { identityAdd(input: $input) {
  identity { id type value } userId mergedUserIds userErrors { field code message } } }"""


async def test_user_create_normalises_phone_to_e164_and_lowercases_email(api: Api) -> None:
    vip = await f.group(api, "VIP")
    user = await f.user(api, "li.lei", phone="130 1111 2222", email="Li.Lei@Example.COM",
                        displayName="Li Lei", gender="MALE", birthday="1990-05-01", groupIds=[vip["id"]])
    values = {i["type"]: i["value"] for i in user["identities"]}
    assert values == {"PHONE": "+8613011112222", "EMAIL": "li.lei@example.com"}  # workspace region CN
    assert user["displayName"] == "Li Lei" and user["gender"] == "MALE" and user["age"] >= 30
    assert user["groups"] == [{"id": vip["id"], "name": "VIP"}]
    assert user["source"] == "INTERNAL" and user["accountType"] == "GENERAL"


async def test_user_create_rejects_invalid_phone_and_email_with_codes(api: Api) -> None:
    data = await api(f.CREATE_USER, input={"username": "a", "identities": [{"type": "PHONE", "value": "12"}]})
    assert data["userCreate"]["userErrors"][0]["code"] == "INVALID_PHONE"
    assert data["userCreate"]["userErrors"][0]["field"] == ["identities", "0", "value"]
    data = await api(f.CREATE_USER, input={"username": "a", "identities": [{"type": "EMAIL", "value": "no-at"}]})
    assert data["userCreate"]["userErrors"][0]["code"] == "INVALID_EMAIL"
    assert (await api("{ users { totalCount } }"))["users"]["totalCount"] == 0


async def test_user_create_requires_unique_username(api: Api) -> None:
    await f.user(api, "taken")
    data = await api(f.CREATE_USER, input={"username": "taken"})
    assert data["userCreate"]["userErrors"][0]["code"] == "USERNAME_TAKEN"
    data = await api(f.CREATE_USER, input={"username": "  "})
    assert data["userCreate"]["userErrors"][0]["code"] == "USERNAME_REQUIRED"


async def test_user_create_refuses_identity_of_another_user(api: Api) -> None:
    await f.user(api, "first", phone="+8613011112222")
    data = await api(f.CREATE_USER, input={"username": "second",
                                           "identities": [{"type": "PHONE", "value": "13011112222"}]})
    assert data["userCreate"]["userErrors"][0]["code"] == "IDENTITY_TAKEN"


async def test_at_most_ten_admin_accounts(api: Api) -> None:
    for i in range(10):
        await f.user(api, f"admin{i}", accountType="ADMIN")
    data = await api(f.CREATE_USER, input={"username": "admin10", "accountType": "ADMIN"})
    assert data["userCreate"]["userErrors"][0]["code"] == "ADMIN_LIMIT"


async def test_user_update_locks_edited_fields_and_keeps_username_immutable(api: Api) -> None:
    user = await f.user(api, "zhang", displayName="Zhang")
    payload = await api.ok(f.UPDATE_USER, input={"id": user["id"], "city": "Hangzhou", "nickname": "Z"})
    assert payload["user"]["city"] == "Hangzhou"
    assert payload["user"]["lockedFields"] == ["city", "nickname"]
    payload = await api.ok(f.UPDATE_USER, input={"id": user["id"], "unlockFields": ["city"]})
    assert payload["user"]["lockedFields"] == ["nickname"] and payload["user"]["city"] == "Hangzhou"
    data = await api(f.UPDATE_USER, input={"id": user["id"], "username": "other"})
    assert data["userUpdate"]["userErrors"][0]["code"] == "USERNAME_IMMUTABLE"
    data = await api(f.UPDATE_USER, input={"id": user["id"], "accountType": "ADMIN"})
    assert data["userUpdate"]["userErrors"][0]["code"] == "ACCOUNT_TYPE_IMMUTABLE"
    data = await api(f.UPDATE_USER, input={"id": user["id"], "unlockFields": ["shoeSize"]})
    assert data["userUpdate"]["userErrors"][0]["code"] == "UNKNOWN_FIELD"


async def test_user_update_of_unknown_or_malformed_id_is_a_user_error(api: Api) -> None:
    data = await api(f.UPDATE_USER, input={"id": "bm9wZQ", "city": "x"})
    assert data["userUpdate"]["userErrors"][0]["code"] == "INVALID_ID"
    data = await api(f.UPDATE_USER, input={"id": "VXNlcjo5OTk5", "city": "x"})  # User:9999
    assert data["userUpdate"]["userErrors"][0]["code"] == "NOT_FOUND"


async def test_user_by_identity_finds_by_national_or_international_phone(api: Api) -> None:
    user = await f.user(api, "wang", phone="+86 130 1111 3333")
    query = "query($v: String!) { userByIdentity(type: PHONE, value: $v) { id username } }"
    assert (await api(query, v="13011113333"))["userByIdentity"]["id"] == user["id"]
    assert (await api(query, v="+8613011113333"))["userByIdentity"]["username"] == "wang"
    assert (await api(query, v="13099999999"))["userByIdentity"] is None


async def test_identity_add_joining_two_users_merges_them_into_the_oldest(api: Api) -> None:
    a_group, b_group = await f.group(api, "A"), await f.group(api, "B")
    await f.tag(api, "tier")
    old = await f.user(api, "old", phone="+8613011110001", groupIds=[a_group["id"]], city="Beijing",
                       tags=[{"key": "tier", "values": ["gold"]}])
    new = await f.user(api, "new", email="new@example.com", groupIds=[b_group["id"]], nickname="Newbie")
    payload = await api.ok(IDENTITY_ADD, input={"userId": new["id"],
                                                "identity": {"type": "PHONE", "value": "13011110001"}})
    assert payload["userId"] == old["id"] and payload["mergedUserIds"] == [new["id"]]
    merged = (await api("query($id: ID!) { user(id: $id) { username nickname city identities { type value }"
                        " groups { name } tags { key values } } }", id=old["id"]))["user"]
    assert merged["username"] == "old" and merged["nickname"] == "Newbie" and merged["city"] == "Beijing"
    assert {(i["type"], i["value"]) for i in merged["identities"]} == {
        ("PHONE", "+8613011110001"), ("EMAIL", "new@example.com")}
    assert sorted(g["name"] for g in merged["groups"]) == ["A", "B"]
    assert merged["tags"] == [{"key": "tier", "values": ["gold"]}]
    assert (await api("query($id: ID!) { user(id: $id) { id } }", id=new["id"]))["user"] is None


async def test_merge_refused_when_per_type_limit_would_be_exceeded(api: Api) -> None:
    a = await f.user(api, "a", identities=[{"type": "EMAIL", "value": f"a{i}@x.com"} for i in range(3)])
    b = await f.user(api, "b", identities=[{"type": "EMAIL", "value": f"b{i}@x.com"} for i in range(3)])
    data = await api(MERGE, ids=[a["id"], b["id"]])
    assert data["usersMerge"]["userErrors"][0]["code"] == "IDENTITY_LIMIT"
    count = await api("{ users { totalCount } }")
    assert count["users"]["totalCount"] == 2  # nothing changed


async def test_identity_add_refuses_a_sixth_identity_of_one_type(api: Api) -> None:
    user = await f.user(api, "five", identities=[{"type": "EMAIL", "value": f"e{i}@x.com"} for i in range(5)])
    data = await api(IDENTITY_ADD, input={"userId": user["id"], "identity": {"type": "EMAIL", "value": "e6@x.com"}})
    assert data["identityAdd"]["userErrors"][0]["code"] == "IDENTITY_LIMIT"


async def test_users_merge_merges_into_oldest(api: Api) -> None:
    a = await f.user(api, "a", phone="+8613011110002")
    b = await f.user(api, "b", email="b@x.com", displayName="Bee")
    payload = await api.ok(MERGE, ids=[b["id"], a["id"]])
    assert payload["user"]["id"] == a["id"] and payload["user"]["displayName"] == "Bee"
    assert payload["mergedUserIds"] == [b["id"]]
    data = await api(MERGE, ids=[a["id"]])
    assert data["usersMerge"]["userErrors"][0]["code"] == "TOO_FEW_USERS"


async def test_identity_remove(api: Api) -> None:
    user = await f.user(api, "r", phone="+8613011110003")
    identity_id = user["identities"][0]["id"]
    mutation = "mutation($id: ID!) { identityRemove(input: {id: $id}) { removedIdentityId userErrors { code } } }"
    assert (await api.ok(mutation, id=identity_id))["removedIdentityId"] == identity_id
    assert (await api(mutation, id=identity_id))["identityRemove"]["userErrors"][0]["code"] == "NOT_FOUND"


async def test_hashed_identity_is_matched_as_is(api: Api) -> None:
    digest = "A" * 64
    user = await f.user(api, "h", identities=[{"type": "PHONE", "value": digest, "encryption": "SHA256"}])
    assert user["identities"][0]["value"] == "a" * 64 and user["identities"][0]["encryption"] == "SHA256"
    data = await api(f.CREATE_USER, input={"username": "h2", "identities": [
        {"type": "PHONE", "value": "xyz", "encryption": "MD5"}]})
    assert data["userCreate"]["userErrors"][0]["code"] == "INVALID_HASH"


async def test_too_long_profile_values_are_user_errors(api: Api) -> None:
    data = await api(f.CREATE_USER, input={"username": "long", "city": "x" * 101})
    assert data["userCreate"]["userErrors"][0]["code"] == "INVALID_VALUE"
    assert data["userCreate"]["userErrors"][0]["field"] == ["city"]
    user = await f.user(api, "ok")
    data = await api(f.UPDATE_USER, input={"id": user["id"], "statusMessage": "y" * 501})
    assert data["userUpdate"]["userErrors"][0]["field"] == ["statusMessage"]
