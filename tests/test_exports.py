"""exportStart end to end: the job on a real arq worker, the ZIP a user downloads, permissions, the CLI."""
from __future__ import annotations

import asyncio
import base64
import csv
import io
import os
import subprocess
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jobs import exports
from jobs.export_writer import CsvZipWriter, decrypt_cell, encrypt_cell
from jobs.runner import JobRun, run_job
from models import db, files
from models.enums import Role
from models.exports import guard
from models.files import download_token
from models.workspaces import create_workspace
from schema.common import from_global_id
from tests import factories as f
from tests.conftest import Api, make_workspace, other_key, work
from tests.processes import ROSTER

START = """mutation($input: ExportStartInput!) { exportStart(input: $input) {
  job { id kind status } omittedColumns userErrors { field code message } } }"""
JOB = """query($id: ID!) { job(id: $id) { id status error progress { done total } counts
  resultFile { name size downloadUrl } } }"""
KEY = "{ workspaceExportKey { algorithm key cellFormat } }"



def read_zip(content: bytes) -> tuple[bytes, list[list[str]]]:
    """(the CSV's raw bytes, its rows) from the single file of an export ZIP."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        (name,) = archive.namelist()
        assert name.endswith(".csv")
        raw = archive.read(name)
    return raw, list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


async def export(api: Api, redis_url: str, **input_: Any) -> tuple[dict[str, Any], list[list[str]]]:
    """Start an export, run the worker, download the file: (the job, the CSV rows)."""
    started = (await api(START, input=input_))["exportStart"]
    assert started["userErrors"] == [] and started["job"]["kind"] == "EXPORT", started
    await work(redis_url)
    job = (await api(JOB, id=started["job"]["id"]))["job"]
    assert job["status"] == "SUCCEEDED", job
    response = await api.client.get(job["resultFile"]["downloadUrl"].replace("http://roster", ""))
    assert response.status_code == 200
    raw, rows = read_zip(response.content)
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM
    return job, rows


async def people(api: Api) -> dict[str, dict[str, Any]]:
    vip = await f.group(api, "VIP")
    await f.tag(api, "tier")
    await f.tag(api, "interests", "MULTI_VALUE", ["golf", "tea"])
    li = await f.user(api, "li", displayName="Li Lei", groupIds=[vip["id"]],
                      identities=[{"type": "PHONE", "value": "+8613011110001"},
                                  {"type": "PHONE", "value": "+8613011110002"},
                                  {"type": "EMAIL", "value": "li@example.com"}],
                      tags=[{"key": "tier", "values": ["gold"]}, {"key": "interests", "values": ["golf", "tea"]}])
    sam = await f.user(api, "sam", phone="+14155552671", displayName="Sam",
                       tags=[{"key": "tier", "values": ["silver"]}])
    ann = await f.user(api, "ann", email="ann@example.com", displayName="王芳", groupIds=[vip["id"]])
    return {"li": li, "sam": sam, "ann": ann, "vip": vip}


async def test_export_writes_a_bom_csv_in_a_zip_with_seed_labels_and_aes_cells(api: Api, redis_url: str) -> None:
    p = await people(api)
    job, rows = await export(api, redis_url, columns={"fields": ["id", "displayName"], "identities": ["PHONE", "EMAIL"],
                                                      "tags": ["tier", "interests"]},
                             identityEncryption=[{"type": "PHONE", "encryption": "AES"}])
    assert rows[0] == ["id", "displayName", "MOBILE(AES)", "EMAIL(UNENCRYPTED)", "Tier", "Interests"]
    assert job["progress"] == {"done": 3, "total": 3}
    assert job["counts"] == {"users": 3, "columns": 6, "omittedColumns": []}
    assert job["resultFile"]["name"].endswith(".zip")
    key = base64.b64decode((await api(KEY))["workspaceExportKey"]["key"])
    assert len(key) == 32
    by_id = {r[0]: r for r in rows[1:]}
    li, sam, ann = by_id[p["li"]["id"]], by_id[p["sam"]["id"]], by_id[p["ann"]["id"]]
    assert decrypt_cell(key, li[2]) == "+8613011110001;+8613011110002"
    assert li[2] != sam[2] and decrypt_cell(key, sam[2]) == "+14155552671"
    assert ann[2] == ""  # nothing to encrypt: the cell stays empty
    assert li[3:] == ["li@example.com", "gold", "golf;tea"] and ann[1] == "王芳"
    # a fresh nonce per cell: the same value encrypts differently in another export
    _, again = await export(api, redis_url, columns={"identities": ["PHONE"]},
                            identityEncryption=[{"type": "PHONE", "encryption": "AES"}])
    assert again[0] == ["MOBILE(AES)"] and sam[2] not in [r[0] for r in again[1:]]


async def test_export_without_columns_has_every_field_identity_and_tag(api: Api, redis_url: str) -> None:
    await people(api)
    _, rows = await export(api, redis_url)
    header = rows[0]
    assert header[:4] == ["id", "username", "accountType", "displayName"] and "createdAt" in header
    assert header[-7:] == ["MOBILE(UNENCRYPTED)", "EMAIL(UNENCRYPTED)", "WHATSAPP(UNENCRYPTED)",
                           "INSTAGRAM(UNENCRYPTED)", "EXTERNAL_ID(UNENCRYPTED)", "Tier", "Interests"]
    assert len(rows) == 4 and all(len(r) == len(header) for r in rows)


@pytest.mark.parametrize("batch_size", [None, 1], ids=["one-batch", "batches-of-1"])
async def test_export_by_filter_has_exactly_the_users_the_users_query_lists(
        api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch, batch_size: int | None) -> None:
    if batch_size is not None:  # every user its own page: the keyset paging after the last id is exercised
        monkeypatch.setattr("jobs.exports.BATCH_SIZE", batch_size)
    p = await people(api)
    await f.user(api, "zed", phone="+8613011110009", tags=[{"key": "tier", "values": ["gold"]}])
    filters = [{"groupIds": [p["vip"]["id"]]},
               {"tags": [{"key": "tier", "op": "IN", "values": ["gold", "silver"]}]},
               {"groupIds": [p["vip"]["id"]], "tags": [{"key": "tier", "op": "MISSING"}]},
               {"query": "+8613011110002"}, {"notInGroupIds": [p["vip"]["id"]]}]
    for filter_ in filters:
        listed = await api("query($f: UserFilter) { users(filter: $f, first: 250) { nodes { id } } }", f=filter_)
        _, rows = await export(api, redis_url, target={"filter": filter_}, columns={"fields": ["id"]})
        assert sorted(r[0] for r in rows[1:]) == sorted(n["id"] for n in listed["users"]["nodes"]), filter_
    _, everyone = await export(api, redis_url, columns={"fields": ["id", "username"]})
    assert [r[1] for r in everyone[1:]] == ["li", "sam", "ann", "zed"]


async def test_single_and_batch_account_export_by_ids(api: Api, redis_url: str) -> None:
    p = await people(api)
    _, one = await export(api, redis_url, target={"ids": [p["sam"]["id"]]}, columns={"fields": ["username"]})
    assert one == [["username"], ["sam"]]
    _, two = await export(api, redis_url, target={"ids": [p["ann"]["id"], p["li"]["id"]]},
                          columns={"fields": ["username"]})
    assert two == [["username"], ["li"], ["ann"]]
    other = await make_workspace(api.client, name="Other")
    _, none = await export(other, redis_url, target={"ids": [p["li"]["id"]]}, columns={"fields": ["username"]})
    assert none == [["username"]]  # another workspace's ids select nothing


async def test_restricted_keys_get_only_readable_columns_and_the_rest_is_listed(api: Api, redis_url: str) -> None:
    await people(api)
    analyst = await other_key(api, Role.ANALYST, ["users:export"])  # reads everything, identities masked
    job, rows = await export(analyst, redis_url, columns={"fields": ["username"], "identities": ["PHONE", "EMAIL"],
                                                          "tags": ["tier"]},
                             identityEncryption=[{"type": "EMAIL", "encryption": "AES"}])
    assert rows[0] == ["username", "Tier"]
    assert job["counts"]["omittedColumns"] == ["MOBILE(UNENCRYPTED)", "EMAIL(AES)"]
    assert not any("*" in cell for row in rows for cell in row)  # left out, never masked

    partner = await other_key(api, Role.PARTNER, ["users:export", "field:display_name:read", "tag:tier:read",
                                                  "identity:EMAIL:read", "jobs:read"])
    started = (await partner(START, input={"columns": {"fields": ["username", "displayName", "city"],
                                                       "identities": ["PHONE", "EMAIL"],
                                                       "tags": ["tier", "interests"]}}))["exportStart"]
    assert started["omittedColumns"] == ["city", "MOBILE(UNENCRYPTED)", "Interests"]
    await work(redis_url)
    job = (await partner(JOB, id=started["job"]["id"]))["job"]
    _, rows = read_zip((await api.client.get(job["resultFile"]["downloadUrl"].replace("http://roster", ""))).content)
    assert rows[0] == ["username", "displayName", "EMAIL(UNENCRYPTED)", "Tier"]
    assert ["li", "Li Lei", "li@example.com", "gold"] in rows

    refused = (await analyst(START, input={"columns": {"identities": ["PHONE"]}}))["exportStart"]
    assert [e["code"] for e in refused["userErrors"]] == ["NO_COLUMNS"] and refused["job"] is None
    denied = await (await other_key(api, Role.ANALYST)).raw(START, {"input": {}})
    assert denied["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"


async def test_formula_cells_are_neutralised_but_phones_and_numbers_stay_usable(api: Api, redis_url: str) -> None:
    await f.tag(api, "spend", "NUMBER")
    await api.ok(f.CREATE_TAG, input={"key": "note", "name": "=Note", "type": "TEXT"})
    await f.user(api, "-rm", phone="+8613011110001", displayName="=HYPERLINK(\"http://x\",\"y\")",
                 nickname="@SUM(A1)", city="+1+cmd|' /C calc'!A0",
                 identities=[{"type": "PHONE", "value": "+8613011110002"},
                             {"type": "EMAIL", "value": "-x@example.com"}],
                 tags=[{"key": "spend", "values": ["-12.5"]}, {"key": "note", "values": ["=1+2"]}])
    columns = {"fields": ["username", "displayName", "nickname", "city"], "identities": ["PHONE", "EMAIL"],
               "tags": ["spend", "note"]}
    expected = ["'-rm", "'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(A1)", "'+1+cmd|' /C calc'!A0",
                "+8613011110002;+8613011110001", "'-x@example.com", "-12.5", "'=1+2"]
    _, rows = await export(api, redis_url, columns=columns)  # CSV straight from PostgreSQL's COPY
    assert rows == [["username", "displayName", "nickname", "city", "MOBILE(UNENCRYPTED)", "EMAIL(UNENCRYPTED)",
                     "Spend", "'=Note"], expected]
    _, rows = await export(api, redis_url, columns=columns,  # rows encrypted in Python: the same guard
                           identityEncryption=[{"type": "EMAIL", "encryption": "AES"}])
    key = base64.b64decode((await api(KEY))["workspaceExportKey"]["key"])
    assert rows[1][:5] + rows[1][6:] == expected[:5] + expected[6:]
    assert decrypt_cell(key, rows[1][5]) == "-x@example.com"  # ciphertext is ours, not user text: unguarded


def test_formula_guard_covers_tab_and_carriage_return_too() -> None:
    assert [guard(c) for c in ("\tcmd", "\rcmd", "=1", "+86130", "-1;+2", "-1-1", "a=1", "")] == [
        "'\tcmd", "'\rcmd", "'=1", "+86130", "-1;+2", "'-1-1", "a=1", ""]


async def test_export_start_reports_bad_input_as_user_errors(api: Api) -> None:
    p = await people(api)
    cases = [
        ({"columns": {"fields": ["id", "shoeSize"]}}, "UNKNOWN_FIELD", ["columns", "fields", "1"]),
        ({"columns": {"tags": ["nope"]}}, "UNKNOWN_TAG", ["columns", "tags", "0"]),
        ({"target": {"ids": ["bad"]}}, "INVALID_ID", ["target", "ids"]),
        ({"target": {"ids": [p["vip"]["id"]]}}, "INVALID_ID", ["target", "ids"]),
        ({"target": {"filter": {"tags": [{"key": "nope", "op": "EXISTS"}]}}}, "UNKNOWN_TAG",
         ["target", "filter", "tags", "0", "key"]),
        ({"identityEncryption": [{"type": "PHONE", "encryption": "AES"}, {"type": "PHONE", "encryption": "NONE"}]},
         "DUPLICATE_IDENTITY_TYPE", ["identityEncryption", "1", "type"]),
        ({"target": {"ids": [p["li"]["id"]] * 10_001}}, "TOO_MANY_IDS", ["target", "ids"]),
    ]
    for input_, code, field in cases:
        result = (await api(START, input=input_))["exportStart"]
        assert [(e["code"], e["field"]) for e in result["userErrors"]] == [(code, field)], (input_, result)
        assert result["job"] is None
    assert (await api("{ jobs { totalCount } }"))["jobs"]["totalCount"] == 0


async def test_export_key_is_for_admins_and_its_reads_are_audited(api: Api) -> None:
    operator = await other_key(api, Role.OPERATOR)
    assert (await operator.raw(KEY))["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    first, second = (await api(KEY))["workspaceExportKey"], (await api(KEY))["workspaceExportKey"]
    assert first == second and first["algorithm"] == "AES-256-GCM" and len(base64.b64decode(first["key"])) == 32
    other = await make_workspace(api.client, name="Other")
    assert (await other(KEY))["workspaceExportKey"]["key"] != first["key"]
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'export_key.read'") == 3


async def test_export_download_needs_a_valid_unexpired_link_of_its_workspace(api: Api, redis_url: str) -> None:
    await people(api)
    job, _ = await export(api, redis_url, columns={"fields": ["id"]})
    url = job["resultFile"]["downloadUrl"].replace("http://roster", "")
    file_id = int(url.split("/")[2].split("?")[0])
    assert (await api.client.get(url, headers={"Authorization": f"Bearer {api.token}"})).status_code == 200
    other = await make_workspace(api.client, name="Other")
    assert (await api.client.get(url, headers={"Authorization": f"Bearer {other.token}"})).status_code == 403
    expired = f"/files/{file_id}?token={download_token(file_id, api.workspace_id, expires_in_s=-1)}"
    assert (await api.client.get(expired)).status_code == 403
    forged = f"/files/{file_id}?token={download_token(file_id, other.workspace_id)}"
    assert (await api.client.get(forged)).status_code == 404  # a valid link of another workspace finds nothing
    tampered = url.replace(f"?token={file_id}.{api.workspace_id}.", f"?token={file_id}.{other.workspace_id}.")
    assert (await api.client.get(tampered)).status_code == 403


async def test_download_links_expire_after_the_configured_time(api: Api, redis_url: str, monkeypatch: Any) -> None:
    import time

    from models import files

    await people(api)
    job, _ = await export(api, redis_url, columns={"fields": ["id"]})
    monkeypatch.setattr(files.settings(), "download_token_ttl_s", 120)
    url = (await api(JOB, id=job["id"]))["job"]["resultFile"]["downloadUrl"]
    expires = int(url.split("token=")[1].split(".")[2])
    assert time.time() + 100 < expires <= time.time() + 121


async def test_an_export_is_the_selection_as_it_was_when_it_began(
        api: Api, redis_url: str, monkeypatch: Any) -> None:
    await people(api)
    monkeypatch.setattr("jobs.exports.BATCH_SIZE", 1)  # one user a batch: the changes land mid-export
    saves, changed = JobRun.save, []

    async def change_after_first_batch(self: JobRun, conn: Any, **kw: Any) -> None:
        if not changed:
            changed.append(True)
            await db.execute("UPDATE users SET display_name = 'Changed' WHERE username IN ('sam', 'ann')")
            await db.execute("DELETE FROM users WHERE username = 'ann'")
            await f.user(api, "zed", displayName="Zed")
        await saves(self, conn, **kw)

    monkeypatch.setattr(JobRun, "save", change_after_first_batch)
    job, rows = await export(api, redis_url, columns={"fields": ["username", "displayName"]})
    assert rows == [["username", "displayName"], ["li", "Li Lei"], ["sam", "Sam"], ["ann", "王芳"]]
    assert job["progress"] == {"done": 3, "total": 3} and changed


async def test_cancelled_export_keeps_no_file_and_a_retry_starts_over(
        api: Api, redis_url: str, monkeypatch: Any) -> None:
    await people(api)
    monkeypatch.setattr("jobs.exports.BATCH_SIZE", 1)
    started = (await api(START, input={"columns": {"fields": ["username"]}}))["exportStart"]
    job_id = from_global_id(started["job"]["id"])[1]
    saves = JobRun.save

    async def cancel_after_first_batch(self: JobRun, conn: Any, **kw: Any) -> None:
        await db.execute("UPDATE jobs SET status = 'CANCELLED' WHERE id = $1", self.id)  # as jobCancel does
        await saves(self, conn, **kw)

    monkeypatch.setattr(JobRun, "save", cancel_after_first_batch)
    await work(redis_url)
    monkeypatch.setattr(JobRun, "save", saves)
    job = (await api(JOB, id=started["job"]["id"]))["job"]
    assert job["status"] == "CANCELLED" and job["resultFile"] is None
    folder = files.files_root() / str(api.workspace_id)
    assert not list(folder.glob(f".export-{job_id}-*")) and await db.fetchval(
        "SELECT count(*) FROM files WHERE kind = 'EXPORT'") == 0

    # A retried attempt (its worker died mid-file) starts over and removes the lost attempt's partial file.
    again = (await api(START, input={"columns": {"fields": ["username"]}}))["exportStart"]
    again_id = from_global_id(again["job"]["id"])[1]
    lost = folder / f".export-{again_id}-1.zip.part"
    lost.write_bytes(b"half a zip")
    await db.execute("UPDATE jobs SET status = 'RUNNING', attempts = 1 WHERE id = $1", again_id)
    assert await run_job({}, again_id, 2) == "succeeded"
    assert not lost.exists()
    job = (await api(JOB, id=again["job"]["id"]))["job"]
    _, rows = read_zip((await api.client.get(job["resultFile"]["downloadUrl"].replace("http://roster", ""))).content)
    assert rows == [["username"], ["li"], ["sam"], ["ann"]]


async def test_roster_export_writes_the_zip_with_a_progress_bar(
        app: Any, database_url: str, redis_url: str, tmp_path: Path) -> None:
    workspace = await create_workspace("Cli export", default_region="CN")
    await db.execute("INSERT INTO tags (workspace_id, key, name, type, allowed_values, created_at)"
                     " VALUES ($1, 'tier', 'Tier', 'TEXT', '[]', now())", workspace.id)
    for i, tier in enumerate(["gold", "silver", "gold"], 1):
        user_id = await db.fetchval("INSERT INTO users (workspace_id, username, display_name, source, locked_fields)"
                                    " VALUES ($1, $2, $3, 'INTERNAL', '[]') RETURNING id",
                                    workspace.id, f"u{i}", f"U {i}")
        await db.execute("INSERT INTO identities (workspace_id, user_id, type, value) VALUES ($1, $2, 'PHONE', $3)",
                         workspace.id, user_id, f"+861301111000{i}")
        await db.execute("INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked, updated_at)"
                         " SELECT $1, $2, id, ARRAY[$3], 'MANUAL', false, now() FROM tags WHERE workspace_id = $1",
                         workspace.id, user_id, tier)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(tmp_path / "data")}
    env.pop("XDG_RUNTIME_DIR", None)
    out = tmp_path / "gold.zip"
    done = subprocess.run([*ROSTER, "export", "--workspace", str(workspace.id), "--out", str(out),
                           "--tag", "tier=gold", "--columns", "username,PHONE:AES,tag:tier"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "100.0%" in done.stderr and "2 users" in done.stdout
    raw, rows = read_zip(out.read_bytes())
    key = bytes(await db.fetchval("SELECT export_key FROM workspaces WHERE id = $1", workspace.id))
    assert raw.startswith(b"\xef\xbb\xbf") and rows[0] == ["username", "MOBILE(AES)", "Tier"]
    assert [(r[0], decrypt_cell(key, r[1]), r[2]) for r in rows[1:]] == [
        ("u1", "+8613011110001", "gold"), ("u3", "+8613011110003", "gold")]
    refused = subprocess.run([*ROSTER, "export", "--workspace", str(workspace.id), "--out", str(out),
                              "--filter", '{"tags": [{"key": "nope", "op": "EXISTS"}]}'],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "UNKNOWN_TAG" in refused.stderr


# --- the writer -------------------------------------------------------------------------------------------

def test_aes_cells_never_start_with_a_formula_trigger_and_all_decrypt() -> None:
    key = os.urandom(32)
    aes = AESGCM(key)
    values = [f"+8613{i:09d}" for i in range(2000)]
    cells = [encrypt_cell(aes, v) for v in values]
    # base64 starts with '+' when the nonce's top 6 bits are 62 (1 in 64 before the fix: ~31 in 2000)
    assert not [c for c in cells if c.startswith("+")]
    assert [decrypt_cell(key, c) for c in cells] == values


def test_writer_closes_the_zip_when_opening_the_entry_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archives: list[zipfile.ZipFile] = []

    def refuse(self: zipfile.ZipFile, *args: Any, **kwargs: Any) -> Any:
        archives.append(self)
        raise OSError("no space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)
    with pytest.raises(OSError, match="no space"):
        with CsvZipWriter(tmp_path / "x.zip", "x.csv"):
            pass
    assert len(archives) == 1 and archives[0].fp is None  # closed: no file handle left open


def test_writer_closes_the_zip_when_closing_the_entry_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_close(self: Any) -> None:  # as a failed flush of the last compressed block would
        io.BufferedIOBase.close(self)
        self._zipfile._writing = False  # what _ZipWriteFile.close does in its finally
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        with CsvZipWriter(tmp_path / "x.zip", "x.csv") as writer:
            writer.header(["a"])
            archive = writer._zip
            assert archive is not None
            monkeypatch.setattr(zipfile._ZipWriteFile, "close", fail_close)  # type: ignore[attr-defined]
    assert archive.fp is None


async def test_a_cancelled_export_waits_for_the_write_in_progress() -> None:
    started, release = threading.Event(), threading.Event()
    written: list[bytes] = []

    class Writer:
        def copy_text(self, data: bytes) -> None:
            started.set()
            release.wait(10)
            written.append(data)

    class Run:
        async def save(self, *args: Any, **kwargs: Any) -> None:
            pass

    async def batches() -> Any:
        yield "copy", b"1", 1
        yield "copy", b"2", 1  # _write waits here for the first batch's write

    task = asyncio.create_task(exports._write(Run(), Writer(), batches(), {"users": 0}))  # type: ignore[arg-type]
    try:
        await asyncio.to_thread(started.wait, 10)
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.1)
        task.cancel()  # a second cancellation does not cut the wait short either
        await asyncio.sleep(0.1)
        assert not task.done()  # the ZIP would be closed under the thread still writing
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert written == [b"1"]
