"""Stored files (uploads, exports, error reports): streaming them to disk, and signed download tokens.

Bytes live under `settings.files_dir / storage_key`; the `files` row holds the name, size and digest.
The API (create_app) and the worker call `configure(settings)`; otherwise the environment's settings apply.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import mimetypes
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PureWindowsPath
from typing import Any

import asyncpg

from models import db
from models.errors import DomainError
from settings import Settings, get_settings

_settings: Settings | None = None
_WRITE_BUFFER = 1024 * 1024  # bytes gathered before one (threaded) disk write
_TOKEN_PURPOSE = b"roster-file-download:"


class InvalidToken(DomainError):
    def __init__(self, message: str = "the download link is not valid") -> None:
        super().__init__("INVALID_TOKEN", message, ["token"])


def configure(settings: Settings) -> None:
    global _settings
    _settings = settings


def settings() -> Settings:
    return _settings or get_settings()


def files_root() -> Path:
    return settings().files_dir


def path_of(file_row: Any) -> Path:
    """Where a file's bytes are; refuses a storage key that would reach outside the files folder."""
    root = files_root().resolve()
    path = (root / file_row["storage_key"]).resolve()
    if not path.is_relative_to(root):
        raise DomainError("INVALID_FILE", "the file's storage key is not valid")
    return path


def clean_name(name: str | None, default: str = "upload") -> str:
    """A display name: no folders (a browser may send C:\\Users\\x\\list.csv), no control characters."""
    base = PureWindowsPath(name or "").name.strip()
    base = re.sub(r"[\x00-\x1f\x7f]", "", base)[:300]
    return base or default


def _new_key(workspace_id: int, name: str) -> str:
    suffix = Path(name).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix) else ""
    return f"{workspace_id}/{uuid.uuid4().hex}{suffix}"


async def store_upload(workspace_id: int, name: str, chunks: AsyncIterator[bytes], kind: str = "UPLOAD",
                       max_bytes: int | None = None) -> asyncpg.Record:
    """Stream `chunks` into a new stored file and insert its row (returned).

    Constant memory: bytes go to disk in ~1 MiB writes. Past `max_bytes` (default: the upload limit)
    the partial file is removed and DomainError FILE_TOO_LARGE raised; an empty upload is EMPTY_FILE.
    """
    limit = settings().max_upload_bytes if max_bytes is None else max_bytes
    name = clean_name(name)
    key = _new_key(workspace_id, name)
    target = files_root() / key
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    digest, size, buffer = hashlib.sha256(), 0, bytearray()
    try:
        with partial.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                digest.update(chunk)
                buffer += chunk
                if len(buffer) >= _WRITE_BUFFER:
                    await asyncio.to_thread(out.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(out.write, bytes(buffer))
        if size == 0:
            raise DomainError("EMPTY_FILE", "the file is empty", ["file"])
        partial.rename(target)
    except BaseException:  # too large, a client that went away, a full disk: leave nothing behind
        partial.unlink(missing_ok=True)
        raise
    try:
        return await _insert(workspace_id, kind, key, name, size, digest.hexdigest())
    except BaseException:
        target.unlink(missing_ok=True)
        raise


async def read_chunks(upload: Any, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The bytes of an uploaded (spooled) file, e.g. a Starlette UploadFile, a chunk at a time."""
    while chunk := await upload.read(size):
        yield chunk


async def create_file(workspace_id: int, kind: str, name: str, path: Path) -> asyncpg.Record:
    """Take a file a job wrote (an export, an error report) into storage and insert its row (returned)."""
    name = clean_name(name, default="file")
    key = _new_key(workspace_id, name)
    target = files_root() / key
    target.parent.mkdir(parents=True, exist_ok=True)
    size, sha256 = await asyncio.to_thread(_move_and_digest, Path(path), target)
    try:
        return await _insert(workspace_id, kind, key, name, size, sha256)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _move_and_digest(source: Path, target: Path) -> tuple[int, str]:
    shutil.move(source, target)  # a rename on the same file system
    digest, size = hashlib.sha256(), 0
    with target.open("rb") as f:
        while chunk := f.read(_WRITE_BUFFER):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def _insert(workspace_id: int, kind: str, key: str, name: str, size: int, sha256: str) -> asyncpg.Record:
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return await db.fetchrow(
        "INSERT INTO files (workspace_id, kind, storage_key, name, content_type, size, sha256, expires_at, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8), now()) RETURNING *",
        workspace_id, kind, key, name, content_type, size, sha256, float(settings().file_retention_s))


async def file_row(workspace_id: int, file_id: int) -> asyncpg.Record | None:
    """The workspace's file, unless it expired (the worker deletes expired ones hourly)."""
    return await db.fetchrow(
        "SELECT * FROM files WHERE workspace_id = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > now())",
        workspace_id, file_id)


def too_large(limit: int | None = None) -> DomainError:
    limit = settings().max_upload_bytes if limit is None else limit
    return DomainError("FILE_TOO_LARGE", f"the file is larger than the limit of {_human(limit)}", ["file"])


def _human(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size} bytes"
    return f"{size / (1024 * 1024):g} MiB"


# Download tokens: "<file id>.<workspace id>.<expiry unix s>.<base64url HMAC-SHA256 of the first three>".
# Stateless, so a link works on any API process sharing the key, and cannot be widened to another file.

def download_token(file_id: int, workspace_id: int, expires_in_s: int | None = None) -> str:
    ttl = settings().download_token_ttl_s if expires_in_s is None else expires_in_s
    payload = f"{int(file_id)}.{int(workspace_id)}.{int(time.time()) + int(ttl)}"
    return f"{payload}.{_sign(payload)}"


def verify_token(token: str) -> tuple[int, int]:
    """(file id, workspace id) of a valid, unexpired token; InvalidToken otherwise."""
    payload, _, signature = (token or "").rpartition(".")
    if not hmac.compare_digest(_sign(payload).encode(), signature.encode()):
        raise InvalidToken()
    try:
        file_id, workspace_id, expires = (int(p) for p in payload.split("."))
    except ValueError:
        raise InvalidToken() from None
    if expires < time.time():
        raise InvalidToken("the download link has expired")
    return file_id, workspace_id


def _sign(payload: str) -> str:
    mac = hmac.new(settings().signing_key, _TOKEN_PURPOSE + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")
