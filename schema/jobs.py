"""Background jobs (imports, exports, pushes) and the files they produce."""
from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models import db, enums
from schema.common import Node, UserError, to_global_id

JobKind = strawberry.enum(enums.JobKind)
JobStatus = strawberry.enum(enums.JobStatus)

@strawberry.type(description="A stored file: an upload, an export or an import's error report.")
class File(Node):
    name: str
    size: int
    content_type: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    pk: strawberry.Private[int]
    workspace_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> File:
        return cls(id=to_global_id("File", row["id"]), pk=row["id"], workspace_id=row["workspace_id"],
                   name=row["name"], size=row["size"], content_type=row["content_type"],
                   created_at=row["created_at"], expires_at=row["expires_at"])

    @strawberry.field(description="A signed link to download the file, valid for DOWNLOAD_TOKEN_TTL_S (an hour).")
    def download_url(self, info: Info) -> str:
        from models.files import download_token

        path = f"/files/{self.pk}?token={download_token(self.pk, self.workspace_id)}"
        request = getattr(info.context, "request", None)
        if request is None:
            return path
        base = str(request.base_url).rstrip("/")
        return base.replace("ws://", "http://", 1).replace("wss://", "https://", 1) + path


@strawberry.type
class JobProgress:
    done: int
    total: int | None = strawberry.field(description="Unknown (null) until the job has counted its work.")


@strawberry.type(description="Background work started by a mutation (an import, an export, an audience push).")
class Job(Node):
    kind: JobKind
    status: JobStatus
    progress: JobProgress
    counts: JSON = strawberry.field(description="What the job did so far, by outcome (rows, created, failed…).")
    error: str | None = strawberry.field(description="Why the job FAILED.")
    attempts: int = strawberry.field(description=(
        "The current attempt: 0 until a worker starts the job, more when a worker died and another resumed it."))
    created_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    pk: strawberry.Private[int]
    workspace_id: strawberry.Private[int]
    result_file_id: strawberry.Private[int | None]
    error_file_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(id=to_global_id("Job", row["id"]), pk=row["id"], workspace_id=row["workspace_id"],
                   kind=enums.JobKind(row["kind"]), status=enums.JobStatus(row["status"]),
                   progress=JobProgress(done=row["progress_done"], total=row["progress_total"]),
                   counts=db.json_value(row["counts"]) or {}, error=row["error"], attempts=row["attempts"],
                   created_by=row["created_by"], created_at=row["created_at"], started_at=row["started_at"],
                   finished_at=row["finished_at"], result_file_id=row["result_file_id"],
                   error_file_id=row["error_file_id"])

    @strawberry.field(description=(
        "The file the job produced (an export). Only for the key that started the job, or an ADMIN: it holds "
        "the columns that key may read."))
    async def result_file(self, info: Info) -> File | None:
        return await self._file(info, self.result_file_id)

    @strawberry.field(description=(
        "The rows the job could not process, with the reason (CSV). Only for the key that started the job, "
        "or an ADMIN: it holds the original rows."))
    async def error_report(self, info: Info) -> File | None:
        return await self._file(info, self.error_file_id)

    async def _file(self, info: Info, file_id: int | None) -> File | None:
        # jobs:read (every role) shows a job's progress, not its data: a file's link would hand an
        # ANALYST or PARTNER key the phones of an OPERATOR's export.
        principal = info.context.principal
        if file_id is None or principal is None or not (principal.can("*") or principal.actor == self.created_by):
            return None
        row = await db.fetchrow("SELECT * FROM files WHERE workspace_id = $1 AND id = $2", self.workspace_id, file_id)
        return File.from_row(row) if row else None


@strawberry.input
class JobCancelInput:
    id: strawberry.ID


@strawberry.type
class JobCancelPayload:
    job: Job | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
