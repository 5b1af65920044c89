"""Small builders that go through the public GraphQL API."""
from __future__ import annotations

from typing import Any

from tests.conftest import Api

USER_FIELDS = """id username accountType displayName nickname gender birthday age city country memberLevel level
 role friendVerification friendingAllowed messageSettings primaryChannel source initialSource lockedFields
 createdAt updatedAt lastActivityAt
 identities { id type value masked channel source encryption }
 groups { id name }
 tags { key values locked source }"""

CREATE_USER = f"""mutation($input: UserCreateInput!) {{ userCreate(input: $input) {{
  user {{ {USER_FIELDS} }} userErrors {{ field message code }} }} }}"""
UPDATE_USER = f"""mutation($input: UserUpdateInput!) {{ userUpdate(input: $input) {{
  user {{ {USER_FIELDS} }} userErrors {{ field message code }} }} }}"""
CREATE_GROUP = """mutation($input: GroupCreateInput!) { groupCreate(input: $input) {
  group { id name description labels memberCount } userErrors { field message code } } }"""
CREATE_TAG = """mutation($input: TagCreateInput!) { tagCreate(input: $input) {
  tag { id key name type allowedValues tagGroup { id name } } userErrors { field message code } } }"""


async def group(api: Api, name: str = "VIP", **extra: Any) -> dict[str, Any]:
    return (await api.ok(CREATE_GROUP, input={"name": name, **extra}))["group"]


async def tag(api: Api, key: str, type_: str = "TEXT", allowed: list[str] | None = None) -> dict[str, Any]:
    payload = await api.ok(CREATE_TAG, input={"key": key, "name": key.title(), "type": type_,
                                              "allowedValues": allowed or []})
    return payload["tag"]


async def user(api: Api, username: str, phone: str | None = None, email: str | None = None,
               **extra: Any) -> dict[str, Any]:
    identities = extra.pop("identities", [])
    if phone:
        identities.append({"type": "PHONE", "value": phone})
    if email:
        identities.append({"type": "EMAIL", "value": email})
    payload = await api.ok(CREATE_USER, input={"username": username, "identities": identities, **extra})
    return payload["user"]
