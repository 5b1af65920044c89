"""Uploads (GraphQL multipart and POST /uploads), signed downloads, the template, readers and importPreview."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from jobs.readers import cell_text, open_table, sniff_delimiter
from models import files
from models.enums import Role
from models.import_mapping import ImportTarget, suggest_mapping
from settings import Settings, _persisted_secret
from tests import factories as f
from tests.conftest import Api, make_workspace, other_key

UPLOAD = """mutation($input: UploadCreateInput!) { uploadCreate(input: $input) {
  upload { id name size downloadUrl } userErrors { field message code } } }"""
PREVIEW = """mutation($input: ImportPreviewInput!) { importPreview(input: $input) {
  preview { format encoding delimiter totalRowsEstimate
    columns { index name suggested { column target field identityType tagKey region } detectedType sampleValues }
    mapping { column target field identityType tagKey region }
    rows { row values valid cells { column target value code } }
    problems { row column code message } }
  userErrors { field message code } } }"""

CHINESE_CSV = ("姓名;手机号;邮箱;性别;生日;会员等级;备注\n"
               "李雷;130 1111 2222;Li.Lei@Example.com;男;1990-05-01;金卡;老客户\n"
               "韩梅梅;12;han@example;女;1991/02/03;银卡;\n"
               "王;;;女;;;没有联系方式\n")


@pytest.fixture(autouse=True)
def files_in_tmp(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test stores its files (and the signing key) in its own folder."""
    files.configure(settings)
    monkeypatch.setattr(settings, "data_dir", tmp_path)
    yield tmp_path / "files"


def auth(api: Api, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}", **extra}


async def post_upload(api: Api, name: str, data: bytes) -> httpx.Response:
    return await api.client.post("/uploads", files={"file": (name, data, "text/csv")}, headers=auth(api))


async def graphql_upload(api: Api, name: str, data: bytes, preflight: bool = True) -> httpx.Response:
    operations = json.dumps({"query": UPLOAD, "variables": {"input": {"file": None}}})
    headers = auth(api, **({"apollo-require-preflight": "true"} if preflight else {}))
    return await api.client.post("/graphql", headers=headers, files={
        "operations": (None, operations), "map": (None, json.dumps({"0": ["variables.input.file"]})),
        "0": (name, data, "application/octet-stream")})


async def uploaded(api: Api, name: str, data: bytes) -> str:
    response = await post_upload(api, name, data)
    assert response.status_code == 201, response.text
    return response.json()["uploadId"]


async def preview(api: Api, upload_id: str, **input: Any) -> dict[str, Any]:
    return (await api(PREVIEW, input={"uploadId": upload_id, **input}))["importPreview"]


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["userErrors"]]


def xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def stored(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# Uploads

async def test_post_uploads_multipart_stores_the_file_with_its_digest(api: Api, files_in_tmp: Path) -> None:
    data = "name,phone\nLi Lei,13011112222\n".encode()
    response = await post_upload(api, "C:\\Users\\li\\contacts.csv", data)
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "contacts.csv" and body["size"] == len(data)
    assert base64.urlsafe_b64decode(body["uploadId"] + "==").decode().startswith("File:")
    (path,) = stored(files_in_tmp)
    assert path.read_bytes() == data and path.suffix == ".csv"
    row = await files.file_row(api.workspace_id, int(base64.urlsafe_b64decode(body["uploadId"] + "==")[5:]))
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["kind"] == "UPLOAD"
    assert row["expires_at"] is not None


async def test_post_uploads_takes_a_raw_body_named_by_query(api: Api, files_in_tmp: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # chunked transfer: no Content-Length
        for _ in range(3):
            yield b"a" * 100_000

    response = await api.client.post("/uploads?name=big.csv", content=chunks(), headers=auth(api))
    assert response.status_code == 201 and response.json()["size"] == 300_000
    missing = await api.client.post("/uploads", content=b"x", headers=auth(api))
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == "NAME_REQUIRED"


async def test_uploads_need_a_key_with_imports_write(api: Api) -> None:
    assert (await api.client.post("/uploads?name=a.csv", content=b"x")).status_code == 401
    analyst = await other_key(api, Role.ANALYST)
    assert (await post_upload(analyst, "a.csv", b"x")).status_code == 403
    body = (await graphql_upload(analyst, "a.csv", b"x")).json()
    assert body["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


async def test_graphql_multipart_upload_needs_the_preflight_header(api: Api) -> None:
    response = await graphql_upload(api, "contacts.csv", b"name,phone\n", preflight=False)
    assert response.status_code == 400
    payload = (await graphql_upload(api, "contacts.csv", b"name,phone\n")).json()["data"]["uploadCreate"]
    assert payload["userErrors"] == []
    assert payload["upload"]["name"] == "contacts.csv" and payload["upload"]["size"] == 11


async def test_graphql_upload_above_the_request_limit_but_below_the_upload_limit_is_accepted(
        api: Api, settings: Settings) -> None:
    data = b"x" * (settings.max_request_bytes + 1)
    payload = (await graphql_upload(api, "big.csv", data)).json()["data"]["uploadCreate"]
    assert payload["upload"]["size"] == len(data)


async def test_files_over_the_size_limit_are_refused_and_leave_nothing(
        api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch, files_in_tmp: Path) -> None:
    monkeypatch.setattr(settings, "max_upload_bytes", 1000)
    response = await post_upload(api, "big.csv", b"x" * 1001)
    assert response.status_code == 413 and response.json()["errors"][0]["code"] == "FILE_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(5):
            yield b"x" * 400

    response = await api.client.post("/uploads?name=big.csv", content=chunks(), headers=auth(api))
    assert response.status_code == 413 and response.json()["errors"][0]["code"] == "FILE_TOO_LARGE"
    payload = (await graphql_upload(api, "big.csv", b"x" * 1001)).json()["data"]["uploadCreate"]
    assert payload["upload"] is None and codes(payload) == ["FILE_TOO_LARGE"]
    assert stored(files_in_tmp) == []
    assert (await post_upload(api, "ok.csv", b"x" * 1000)).status_code == 201


async def test_empty_upload_is_refused(api: Api) -> None:
    response = await post_upload(api, "empty.csv", b"")
    assert response.status_code == 400 and response.json()["errors"][0]["code"] == "EMPTY_FILE"


# Downloads

async def test_download_link_serves_the_file(api: Api) -> None:
    payload = (await graphql_upload(api, "名单.csv", "姓名\n李雷\n".encode())).json()["data"]["uploadCreate"]
    url = httpx.URL(payload["upload"]["downloadUrl"])
    response = await api.client.get(url.raw_path.decode())
    assert response.status_code == 200 and response.content == "姓名\n李雷\n".encode()
    assert "filename*=utf-8''%E5%90%8D%E5%8D%95.csv" in response.headers["content-disposition"]
    same_workspace = await api.client.get(url.raw_path.decode(), headers=auth(api))
    assert same_workspace.status_code == 200


async def test_download_refuses_bad_expired_foreign_and_mismatched_tokens(api: Api, client: httpx.AsyncClient) -> None:
    upload_id = await uploaded(api, "a.csv", b"name\nx\n")
    file_id = int(base64.urlsafe_b64decode(upload_id + "==")[5:])
    good = files.download_token(file_id, api.workspace_id, 60)
    assert (await client.get(f"/files/{file_id}?token={good}")).status_code == 200
    expired = files.download_token(file_id, api.workspace_id, -1)
    response = await client.get(f"/files/{file_id}?token={expired}")
    assert response.status_code == 403 and "expired" in response.json()["errors"][0]["message"]
    forged = good.replace(f"{file_id}.", f"{file_id + 1}.", 1)
    assert (await client.get(f"/files/{file_id + 1}?token={forged}")).status_code == 403
    assert (await client.get(f"/files/{file_id + 1}?token={good}")).status_code == 403
    assert (await client.get(f"/files/{file_id}")).status_code == 403
    assert (await client.get(f"/files/{file_id}", params={"token": good[:-2] + "é"})).status_code == 403
    stranger = await make_workspace(client, name="Other")
    response = await client.get(f"/files/{file_id}?token={good}", headers=auth(stranger))
    assert response.status_code == 403


async def test_files_written_by_jobs_are_stored_and_downloadable(api: Api, tmp_path: Path) -> None:
    report = tmp_path / "work" / "errors.csv"
    report.parent.mkdir()
    report.write_bytes(b"row,error\n2,INVALID_PHONE\n")
    row = await files.create_file(api.workspace_id, "ERROR_REPORT", "errors.csv", report)
    assert not report.exists() and files.path_of(row).read_bytes() == b"row,error\n2,INVALID_PHONE\n"
    assert row["size"] == 26 and row["content_type"] == "text/csv"
    token = files.download_token(row["id"], api.workspace_id)
    response = await api.client.get(f"/files/{row['id']}?token={token}")
    assert response.status_code == 200 and response.content.startswith(b"row,error")


async def test_signing_key_is_generated_once_and_survives_restarts(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).signing_key
    _persisted_secret.cache_clear()  # as a new process would
    assert Settings(data_dir=tmp_path).signing_key == first and len(first) == 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings(data_dir=tmp_path, secret_key="configured").signing_key == b"configured"


# Template

async def test_template_is_a_bom_csv_that_the_suggestions_map_completely(api: Api, client: httpx.AsyncClient) -> None:
    response = await client.get("/templates/contacts.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    headers = response.content.decode("utf-8-sig").splitlines()[0].split(",")
    assert ImportTarget.IGNORE not in {m.target for m in suggest_mapping(headers)}

    result = await preview(api, await uploaded(api, "contacts.csv", response.content))
    assert result["userErrors"] == []
    assert [c["name"] for c in result["preview"]["columns"]] == headers
    assert "IGNORE" not in {c["suggested"]["target"] for c in result["preview"]["columns"]}
    (row,) = result["preview"]["rows"]
    values = {(c["target"], c["column"]): c["value"] for c in row["cells"]}
    assert row["valid"] and result["preview"]["problems"] == []
    assert values[("IDENTITY", headers.index("phone"))] == "+8613011112222"
    assert values[("PROFILE", headers.index("gender"))] == "MALE"


# Readers

def test_cells_render_like_a_person_reads_them() -> None:
    assert cell_text(8613011112222.0) == "8613011112222"
    assert cell_text(2.5) == "2.5" and cell_text(True) == "true" and cell_text(None) == ""
    assert cell_text(dt.datetime(1990, 5, 1)) == "1990-05-01"
    assert cell_text(dt.datetime(2024, 1, 2, 10, 30)) == "2024-01-02 10:30:00"


def test_delimiter_sniffing_respects_quotes() -> None:
    assert sniff_delimiter('name;phone\n"Li, Lei";130\n"Han, M";131\n') == ";"
    assert sniff_delimiter("name\tphone\nLi\t130\n") == "\t"
    assert sniff_delimiter("a|b|c\n1|2|3\n") == "|"
    assert sniff_delimiter("name,phone\n") == ","


def test_rows_are_padded_truncated_and_blank_rows_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("name,phone,\n\nLi,130,x,extra\nHan\n,,\n", encoding="utf-8")
    table = open_table(path, "t.csv")
    assert table.columns == ["name", "phone"]
    assert list(table.rows()) == [["Li", "130"], ["Han", ""]]
    assert list(table.rows(1)) == [["Han", ""]]


# Preview

async def test_preview_of_a_gb18030_csv_with_chinese_headers_and_semicolons(api: Api) -> None:
    result = await preview(api, await uploaded(api, "客户.csv", CHINESE_CSV.encode("gb18030")))
    p = result["preview"]
    assert (p["format"], p["encoding"], p["delimiter"]) == ("CSV", "gb18030", ";")
    suggested = [(c["suggested"]["target"], c["suggested"]["field"], c["suggested"]["identityType"])
                 for c in p["columns"]]
    assert suggested == [("NAME", None, None), ("IDENTITY", None, "PHONE"), ("IDENTITY", None, "EMAIL"),
                         ("PROFILE", "gender", None), ("PROFILE", "birthday", None),
                         ("PROFILE", "memberLevel", None), ("IGNORE", None, None)]
    assert p["mapping"] == [c["suggested"] for c in p["columns"]]
    assert [c["detectedType"] for c in p["columns"]][3:5] == ["TEXT", "DATE"]
    assert p["columns"][0]["sampleValues"] == ["李雷", "韩梅梅", "王"]
    assert result["userErrors"] == [] and p["totalRowsEstimate"] == 3

    first, second, third = p["rows"]
    cells = {c["column"]: c for c in first["cells"]}
    assert first["row"] == 2 and first["valid"] and first["values"][0] == "李雷"
    assert cells[1]["value"] == "+8613011112222" and cells[2]["value"] == "li.lei@example.com"
    assert cells[3]["value"] == "MALE" and cells[4]["value"] == "1990-05-01"
    assert 6 not in cells  # ignored
    assert not second["valid"] and not third["valid"]
    assert {(x["row"], x["column"], x["code"]) for x in p["problems"]} == {
        (3, 1, "INVALID_PHONE"), (3, 2, "INVALID_EMAIL"), (4, None, "MISSING_IDENTIFIER")}
    assert (await api("{ users { totalCount } }"))["users"]["totalCount"] == 0  # a preview writes nothing


async def test_preview_of_a_utf8_bom_csv(api: Api) -> None:
    data = "\ufeffFull Name,E-mail,WhatsApp,Region\nAna,ana@example.com,612 34 56 78,es\n".encode()
    p = (await preview(api, await uploaded(api, "bom.csv", data)))["preview"]
    assert p["encoding"] == "utf-8-sig" and p["columns"][0]["name"] == "Full Name"
    assert [c["suggested"]["target"] for c in p["columns"]] == ["NAME", "IDENTITY", "IDENTITY", "REGION"]
    (row,) = p["rows"]
    assert {c["column"]: c["value"] for c in row["cells"]} == {
        0: "Ana", 1: "ana@example.com", 2: "+34612345678", 3: "ES"}


async def test_preview_of_an_xlsx_renders_numbers_and_dates_as_text(api: Api) -> None:
    data = xlsx([["Name", "Mobile", "Birthday", "Level"],
                 ["Li Lei", 8613011112222, dt.datetime(1990, 5, 1), 3],
                 ["Han", 13011113333.0, dt.date(1991, 2, 3), 2]])
    payload = (await graphql_upload(api, "contacts.xlsx", data)).json()["data"]["uploadCreate"]
    p = (await preview(api, payload["upload"]["id"]))["preview"]
    assert p["format"] == "XLSX" and p["encoding"] is None
    assert [r["values"] for r in p["rows"]] == [["Li Lei", "8613011112222", "1990-05-01", "3"],
                                                ["Han", "13011113333", "1991-02-03", "2"]]
    assert [c["detectedType"] for c in p["columns"]] == ["TEXT", "PHONE", "DATE", "NUMBER"]
    assert [c["value"] for c in p["rows"][1]["cells"]][:2] == ["Han", "+8613011113333"]


async def test_preview_uses_the_given_mapping_and_region(api: Api) -> None:
    await f.tag(api, "vip", "BOOLEAN")
    data = "who,number,vip?,team\nLi,2025550123,yes,\"A, B\"\n".encode()
    upload_id = await uploaded(api, "x.csv", data)
    mapping = [{"column": 0, "target": "FIRST_NAME"}, {"column": 1, "target": "IDENTITY", "identityType": "PHONE"},
               {"column": 2, "target": "TAG", "tagKey": "vip"}, {"column": 3, "target": "GROUP"}]
    result = await preview(api, upload_id, mapping=mapping, defaultRegion="us")
    assert result["userErrors"] == []
    assert [c["value"] for c in result["preview"]["rows"][0]["cells"]] == ["Li", "+12025550123", "true", "A, B"]
    suggested = [c["suggested"]["target"] for c in result["preview"]["columns"]]
    assert suggested == ["IGNORE", "IDENTITY", "IGNORE", "IGNORE"]  # "number" holds phones
    bad_region = await preview(api, upload_id, defaultRegion="Mars")
    assert codes(bad_region) == ["INVALID_REGION"] and bad_region["preview"] is None


async def test_preview_reports_mapping_problems_as_user_errors(api: Api) -> None:
    upload_id = await uploaded(api, "x.csv", b"nickname,city\nLi,Hangzhou\n")
    result = await preview(api, upload_id)
    assert codes(result) == ["NAME_COLUMN_REQUIRED", "IDENTIFIER_COLUMN_REQUIRED"]
    assert result["preview"]["columns"][0]["suggested"]["field"] == "nickname"  # still shown
    result = await preview(api, upload_id, mapping=[
        {"column": 0, "target": "NAME"}, {"column": 5, "target": "IDENTITY", "identityType": "PHONE"},
        {"column": 1, "target": "TAG", "tagKey": "nope"}, {"column": 1, "target": "PROFILE", "field": "shoeSize"}])
    assert [(e["code"], e["field"]) for e in result["userErrors"]] == [
        ("INVALID_COLUMN", ["mapping", "1", "column"]), ("UNKNOWN_TAG", ["mapping", "2", "tagKey"]),
        ("UNKNOWN_FIELD", ["mapping", "3", "field"])]


async def test_preview_of_unknown_unreadable_or_foreign_uploads(api: Api, client: httpx.AsyncClient) -> None:
    assert codes(await preview(api, await uploaded(api, "a.pdf", b"%PDF-1.4"))) == ["UNSUPPORTED_FILE"]
    assert codes(await preview(api, await uploaded(api, "a.xlsx", b"not a zip"))) == ["INVALID_FILE"]
    assert codes(await preview(api, await uploaded(api, "a.csv", b"\x00\x01\x02"))) == ["INVALID_FILE"]
    stranger = await make_workspace(client, name="Other")
    theirs = await uploaded(stranger, "a.csv", b"name,phone\n")
    assert codes(await preview(api, theirs)) == ["NOT_FOUND"]
    assert codes(await preview(api, "bm9wZQ")) == ["INVALID_ID"]
