"""The Starlette application: GraphQL (+ GraphiQL) at /graphql, health, auth and request limits."""
from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from arq import create_pool
from arq.connections import RedisSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.datastructures import UploadFile
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute, request_response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.types.unset import UNSET, UnsetType
from tortoise.contrib.starlette import RegisterTortoise

from models import db, files
from models.errors import DomainError
from models.import_mapping import template_csv
from models.permissions import Principal
from models.workspaces import authenticate
from resolvers.context import Context
from schema import build_schema
from schema.common import to_global_id
from settings import Settings, get_settings

PRINCIPAL = "roster.principal"
# Non-JSON POSTs (forms, multipart) are what a browser can send cross-site without a preflight.
PREFLIGHT_HEADERS = (b"apollo-require-preflight", b"x-apollo-operation-name", b"x-roster-request")


@dataclass
class WebSocketContext(Context):
    """A subscription connection's context: its principal arrives with `connection_init`."""

    principal: Principal | None = None  # type: ignore[assignment]
    connection_params: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.principal is not None:
            super().__post_init__()

    def sign_in(self, principal: Principal) -> None:
        self.principal = principal
        super().__post_init__()


class TextFrames(ASGIWebSocketAdapter):
    """graphql-transport-ws clients (graphql-ws, Apollo) expect text frames; encode_json gives bytes."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GraphQLApp(GraphQL):
    websocket_adapter_class = TextFrames

    async def get_context(self, request: Any, response: Any) -> Context | None:
        if isinstance(request, WebSocket):
            return WebSocketContext(request=request, response=response)
        principal = request.scope.get(PRINCIPAL)
        # None only while rendering the GraphiQL page, which runs no operation.
        return Context(principal=principal, request=request, response=response) if principal else None

    async def on_ws_connect(self, context: Any) -> UnsetType:
        """Authenticate a websocket by `connection_init` {"Authorization": "Bearer <key>"} or its handshake header
        (ApiKeyAuth only sees HTTP); strawberry refuses any subscribe before this succeeds."""
        params = context.connection_params or {}
        token = params.get("Authorization") or params.get("authorization") or \
            context.request.headers.get("authorization") or ""
        scheme, _, secret = str(token).partition(" ")
        principal = await authenticate(secret.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise ConnectionRejectionError()
        context.sign_in(principal)
        return UNSET

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


class ApiKeyAuth:
    """Bearer API key on every GraphQL request (GraphiQL's HTML page itself is public)."""

    def __init__(self, app: ASGIApp, require_preflight: bool = True) -> None:
        self.app = app
        self.require_preflight = require_preflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if scope["method"] == "GET" and b"text/html" in headers.get(b"accept", b"") and b"query=" not in scope.get(
                "query_string", b""):
            return await self.app(scope, receive, send)
        if self.require_preflight and scope["method"] == "POST" \
                and not headers.get(b"content-type", b"").startswith(b"application/json") \
                and not any(h in headers for h in PREFLIGHT_HEADERS):
            return await _error(400, "non-JSON requests need an 'apollo-require-preflight' header")(scope, receive, send)
        token = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, secret = token.partition(" ")
        principal = await authenticate(secret.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            return await _error(401, "a valid API key is required: 'Authorization: Bearer <key>'")(
                scope, receive, send)
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


async def health(request: Request) -> Response:
    await db.fetchval("SELECT 1")
    await request.app.state.redis.ping()
    return JSONResponse({"status": "ok"})


# Files. Multipart framing around an upload is small; this much slack keeps the file limit the binding one.
MULTIPART_SLACK = 1024 * 1024


class UploadBodyLimit:
    """Multipart GraphQL requests carry uploads: they get the upload limit instead of the request limit."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int) -> None:
        self.app = app
        self.uploads = RequestBodyLimitMiddleware(app, max_body_size=max_upload_bytes + MULTIPART_SLACK)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", ())).get(b"content-type", b"")
        multipart = scope["type"] == "http" and content_type.startswith(b"multipart/form-data")
        await (self.uploads if multipart else self.app)(scope, receive, send)


async def upload(request: Request) -> Response:
    """POST /uploads: a multipart form with a `file` field, or the raw bytes with ?name=<file name>."""
    principal: Principal = request.scope[PRINCIPAL]
    if not principal.can("imports:write"):
        return _error(403, "Access denied: this API key lacks 'imports:write'")
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    limit = files.settings().max_upload_bytes + (MULTIPART_SLACK if multipart else 0)
    length = request.headers.get("content-length", "")
    try:
        if length.isdigit() and int(length) > limit:  # refuse before reading anything
            raise files.too_large()
        if multipart:
            async with request.form(max_files=1, max_fields=10) as form:
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    raise DomainError("FILE_REQUIRED", "send the file in the multipart field 'file'", ["file"])
                row = await files.store_upload(principal.workspace_id, file.filename or "", files.read_chunks(file))
        else:
            name = request.query_params.get("name", "").strip()
            if not name:
                raise DomainError("NAME_REQUIRED", "give the file's name: POST /uploads?name=contacts.csv", ["name"])
            row = await files.store_upload(principal.workspace_id, name, request.stream())
    except DomainError as exc:
        return JSONResponse({"errors": [{"message": exc.message, "code": exc.code}]},
                            status_code=413 if exc.code == "FILE_TOO_LARGE" else 400)
    return JSONResponse({"uploadId": to_global_id("File", row["id"]), "name": row["name"], "size": row["size"]},
                        status_code=201)


async def download(request: Request) -> Response:
    """GET /files/{id}?token=...: the token (from a File's downloadUrl) is the authorisation.

    A request that also carries an API key must come from the file's workspace.
    """
    try:
        file_id, workspace_id = files.verify_token(request.query_params.get("token", ""))
    except DomainError as exc:
        return _error(403, exc.message)
    if file_id != request.path_params["file_id"]:
        return _error(403, "the download link is not valid for this file")
    if "authorization" in request.headers:
        scheme, _, secret = request.headers["authorization"].partition(" ")
        principal = await authenticate(secret.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            return _error(401, "a valid API key is required: 'Authorization: Bearer <key>'")
        if principal.workspace_id != workspace_id:
            return _error(403, "the file belongs to another workspace")
    row = await files.file_row(workspace_id, file_id)
    path = files.path_of(row) if row is not None else None
    if row is None or path is None or not path.is_file():
        return _error(404, "the file does not exist or has expired")
    return FileResponse(path, media_type=row["content_type"], filename=row["name"])


async def contacts_template(request: Request) -> Response:
    return Response(template_csv(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="contacts.csv"'})


def create_app(database_url: str, redis_url: str, settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    files.configure(settings)
    graphql = GraphQLApp(build_schema(settings), graphql_ide="graphiql", multipart_uploads_enabled=True)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=db.tortoise_config(database_url, settings.db_pool_max)):
            app.state.redis = await create_pool(RedisSettings.from_dsn(redis_url))
            # Everything loaded so far (schema, models, modules) lives for the process: keep it out of
            # the collector's way, which otherwise spends 100 ms pauses re-scanning it under load.
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                await app.state.redis.aclose()

    return Starlette(
        routes=[Route("/graphql", ApiKeyAuth(UploadBodyLimit(graphql, settings.max_upload_bytes)),
                      methods=["GET", "POST"]),
                WebSocketRoute("/graphql", graphql),
                Route("/health", health),
                # Bearer keys cannot be sent cross-site without a CORS preflight: no CSRF header needed.
                Route("/uploads", ApiKeyAuth(request_response(upload), require_preflight=False), methods=["POST"],
                      max_body_size=settings.max_upload_bytes + MULTIPART_SLACK),
                Route("/files/{file_id:int}", download),
                Route("/templates/contacts.csv", contacts_template)],
        lifespan=lifespan, max_body_size=settings.max_request_bytes)
