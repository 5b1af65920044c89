"""The Starlette application: GraphQL (+ GraphiQL) at /graphql, health, auth and request limits."""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from arq import create_pool
from arq.connections import RedisSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.types.unset import UNSET, UnsetType
from tortoise.contrib.starlette import RegisterTortoise

from models import db
from models.permissions import Principal
from models.workspaces import authenticate
from resolvers.context import Context
from schema import build_schema
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

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if scope["method"] == "GET" and b"text/html" in headers.get(b"accept", b"") and b"query=" not in scope.get(
                "query_string", b""):
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and not headers.get(b"content-type", b"").startswith(b"application/json") \
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


def create_app(database_url: str, redis_url: str, settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    graphql = GraphQLApp(build_schema(settings), graphql_ide="graphiql", multipart_uploads_enabled=True)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=db.tortoise_config(database_url, settings.db_pool_max)):
            app.state.redis = await create_pool(RedisSettings.from_dsn(redis_url))
            try:
                yield
            finally:
                await app.state.redis.aclose()

    return Starlette(
        routes=[Route("/graphql", ApiKeyAuth(graphql), methods=["GET", "POST"]),
                WebSocketRoute("/graphql", graphql),
                Route("/health", health)],
        lifespan=lifespan, max_body_size=settings.max_request_bytes)
