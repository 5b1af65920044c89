"""importStart end to end: upload, mapping checks, the job on a real arq worker, counts and the error report."""
from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from tests import factories as f
from tests.conftest import Api, work

START = """mutation($input: ImportStartInput!) { importStart(input: $input) {
  job { id kind status } group { id name } userErrors { field code message } } }"""
JOB = """query($id: ID!) { job(id: $id) { status progress { done total } counts error
  errorReport { name downloadUrl } } }"""
CSV = ("姓名,手机号,region,email,tier,group\n"
       "Li Lei,130 1111 0001,CN,li@example.com,gold,VIP\n"
       "Sam,(415) 555-2671,US,sam@example.com,silver,\n"
       "Bad Phone,12345,CN,bad@example.com,gold,\n"
       "Li again,+8613011110001,,li.work@example.com,,VIP\n"
       "No Id,,,,,\n")
MAPPING = [{"column": 0, "target": "NAME"}, {"column": 1, "target": "IDENTITY", "identityType": "PHONE"},
           {"column": 2, "target": "REGION"}, {"column": 3, "target": "IDENTITY", "identityType": "EMAIL"},
           {"column": 4, "target": "TAG", "tagKey": "tier"}, {"column": 5, "target": "GROUP"}]


async def upload(client: httpx.AsyncClient, api: Api, text: str, name: str = "crm.csv") -> str:
    response = await client.post("/uploads", files={"file": (name, text.encode(), "text/csv")},
                                 headers={"Authorization": f"Bearer {api.token}"})
    assert response.status_code == 201, response.text
    return response.json()["uploadId"]



async def start(api: Api, **input_: Any) -> dict[str, Any]:
    return (await api(START, input=input_))["importStart"]


async def test_import_creates_contacts_merges_duplicates_and_reports_bad_rows(
        client: httpx.AsyncClient, api: Api, redis_url: str) -> None:
    await f.tag(api, "tier")
    leads = await f.group(api, "Leads")
    upload_id = await upload(client, api, CSV)
    started = await start(api, uploadId=upload_id, mapping=MAPPING, groupIds=[leads["id"]], source="CRM export")
    assert started["userErrors"] == [] and started["job"]["status"] == "QUEUED"
    await work(redis_url)
    job = (await api(JOB, id=started["job"]["id"]))["job"]
    assert job["status"] == "SUCCEEDED", job
    assert job["counts"] == {"rows": 5, "created": 2, "updated": 0, "merged": 0, "skipped": 0, "failed": 2}
    assert job["progress"] == {"done": 5, "total": 5}
    users = await api("{ users(first: 10, orderBy: {field: ID, direction: ASC}) { edges { node { displayName"
                      " initialSource source identities { type value source } groups { name } tags { key values }"
                      " } } } }")
    li, sam = [e["node"] for e in users["users"]["edges"]]
    assert li["displayName"] == "Li again" and li["initialSource"] == "CRM export" and li["source"] == "IMPORT"
    assert {(i["type"], i["value"]) for i in li["identities"]} == {
        ("PHONE", "+8613011110001"), ("EMAIL", "li@example.com"), ("EMAIL", "li.work@example.com")}
    assert [g["name"] for g in li["groups"]] == ["Leads", "VIP"] and li["tags"] == [{"key": "tier", "values": ["gold"]}]
    assert sam["identities"][1] == {"type": "PHONE", "value": "+14155552671", "source": "CRM export"}
    report = await client.get(job["errorReport"]["downloadUrl"].replace("http://roster", ""))
    assert report.status_code == 200
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert rows[0] == ["姓名", "手机号", "region", "email", "tier", "group", "row", "error_code", "error"]
    assert [(r[0], r[6], r[7]) for r in rows[1:]] == [("Bad Phone", "4", "INVALID_PHONE"),
                                                      ("No Id", "6", "MISSING_IDENTIFIER")]


async def test_ignore_policy_and_new_group(client: httpx.AsyncClient, api: Api, redis_url: str) -> None:
    await f.tag(api, "tier")
    await f.user(api, "li", phone="+8613011110001", displayName="Original")
    upload_id = await upload(client, api, CSV)
    started = await start(api, uploadId=upload_id, mapping=MAPPING, duplicatePolicy="IGNORE",
                          newGroup={"name": "March import", "labels": ["2026"]})
    assert started["group"]["name"] == "March import"
    await work(redis_url)
    job = (await api(JOB, id=started["job"]["id"]))["job"]
    assert job["counts"]["skipped"] == 2 and job["counts"]["created"] == 1
    data = await api("{ userByIdentity(type: PHONE, value: \"+8613011110001\") { displayName groups { name } } }")
    assert data["userByIdentity"] == {"displayName": "Original", "groups": []}
    group = await api("query($id: ID!) { group(id: $id) { memberCount source } }", id=started["group"]["id"])
    assert group["group"] == {"memberCount": 1, "source": "IMPORT"}


async def test_import_start_rejects_bad_mappings_before_anything_runs(client: httpx.AsyncClient, api: Api) -> None:
    group = await f.group(api, "G")
    upload_id = await upload(client, api, CSV)
    no_name = [m for m in MAPPING if m["target"] != "NAME"] + [{"column": 0, "target": "IGNORE"}]
    no_id = [m if m["target"] != "IDENTITY" else {**m, "target": "IGNORE"} for m in MAPPING]
    cases = [
        (dict(mapping=no_name, groupIds=[group["id"]]), "NAME_COLUMN_REQUIRED"),
        (dict(mapping=no_id, groupIds=[group["id"]]), "IDENTIFIER_COLUMN_REQUIRED"),
        (dict(mapping=MAPPING, groupIds=[group["id"]]), "UNKNOWN_TAG"),  # no tag "tier" yet
        (dict(mapping=MAPPING[:3], groupIds=[group["id"]]), "UNMAPPED_COLUMN"),
        (dict(mapping=[m for m in MAPPING if m["target"] not in ("GROUP", "TAG")]
              + [{"column": 4, "target": "IGNORE"}, {"column": 5, "target": "IGNORE"}]), "GROUP_REQUIRED"),
        (dict(mapping=MAPPING, groupIds=["R3JvdXA6OTk5"], defaultRegion="XX"), "INVALID_REGION"),
    ]
    for input_, code in cases:
        result = await start(api, uploadId=upload_id, **input_)
        assert code in [e["code"] for e in result["userErrors"]], (code, result)
        assert result["job"] is None
    assert (await api("{ jobs { totalCount } }"))["jobs"]["totalCount"] == 0


async def test_suggested_mapping_is_used_when_every_column_is_understood(
        client: httpx.AsyncClient, api: Api, redis_url: str) -> None:
    group = await f.group(api, "G")
    upload_id = await upload(client, api, "姓名,手机号,邮箱\n王芳,13011110009,wang@example.com\n")
    started = await start(api, uploadId=upload_id, groupIds=[group["id"]])
    assert started["userErrors"] == []
    await work(redis_url)
    data = await api("{ users { edges { node { displayName identities { value } } } } }")
    assert data["users"]["edges"][0]["node"]["displayName"] == "王芳"
    unknown = await upload(client, api, "name,phone,shoe size\nA,13011110008,42\n")
    result = await start(api, uploadId=unknown, groupIds=[group["id"]])
    assert [e["code"] for e in result["userErrors"]] == ["UNMAPPED_COLUMN"]
