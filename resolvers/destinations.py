"""Destinations and audience pushes: destinations, destinationCreate, destinationDelete, audiencePush."""
from __future__ import annotations

import datetime as dt

import strawberry
from strawberry.types import Info

from models import db
from models import destinations as domain
from models.audiences import readable_fields
from models.enums import DestinationKind, JobKind
from models.errors import DomainError, NotFound
from models.jobs import enqueue_attempt, insert_job, job_row
from resolvers.context import BadRequest, Context
from schema.common import (Connection, Edge, UserError, decode_cursor, encode_cursor, from_global_id, page,
                           page_size, to_global_id)
from schema.destinations import (AudiencePushInput, AudiencePushPayload, Destination, DestinationCreateInput,
                                 DestinationDeleteInput, DestinationDeletePayload, DestinationPayload)
from schema.jobs import Job


async def destinations(info: Info, first: int | None = None, after: str | None = None) -> Connection[Destination]:
    """The workspace's destinations, oldest first (keyset on id); never their secrets."""
    ctx: Context = info.context
    ctx.require("destinations:read")
    try:
        limit = page_size(first)
        after_id = int(decode_cursor(after)[0]) if after else None
    except (DomainError, TypeError, ValueError, IndexError) as exc:
        raise BadRequest(exc if isinstance(exc, DomainError) else
                         DomainError("INVALID_CURSOR", "the cursor is not valid", ["after"])) from None
    rows = await domain.list_destinations(ctx.workspace_id, after_id=after_id, limit=limit + 1)
    edges = [Edge(cursor=encode_cursor([r["id"]]), node=Destination.from_row(r)) for r in rows[:limit]]

    async def count() -> int:
        return await domain.count_destinations(ctx.workspace_id)

    return page(edges, has_more=len(rows) > limit, after=after, count=count)


async def destination_create(info: Info, input: DestinationCreateInput) -> DestinationPayload:
    ctx: Context = info.context
    ctx.require("destinations:write")
    try:
        new = new_destination(input)
        row = await domain.create_destination(ctx.workspace_id, new)
    except DomainError as exc:
        return DestinationPayload(user_errors=[UserError.of(exc)])
    return DestinationPayload(destination=Destination.from_row(row))


def new_destination(input: DestinationCreateInput) -> domain.NewDestination:
    """The validated destination of the input (exactly one of kafka / databank)."""
    if (input.kafka is None) == (input.databank is None):
        raise DomainError("KIND_REQUIRED", "give exactly one of kafka or databank", ["kafka"])
    if input.kafka is not None:
        k = input.kafka
        return domain.kafka_destination(
            input.name, k.bootstrap_servers, k.topic, tls=k.tls,
            sasl_mechanism=k.sasl.mechanism.value if k.sasl else None,
            sasl_username=k.sasl.username if k.sasl else None, sasl_password=k.sasl.password if k.sasl else None,
            idempotence=k.idempotence, compression=k.compression.value)
    d = input.databank
    assert d is not None
    return domain.databank_destination(input.name, d.endpoint, d.access_key_id, d.access_key_secret,
                                       identity_type=d.identity_type.value, hash_=d.hash.value,
                                       batch_size=d.batch_size)


async def destination_delete(info: Info, input: DestinationDeleteInput) -> DestinationDeletePayload:
    ctx: Context = info.context
    ctx.require("destinations:write")
    try:
        await domain.delete_destination(ctx.workspace_id, from_global_id(input.id, "Destination", ["id"])[1])
    except DomainError as exc:
        return DestinationDeletePayload(user_errors=[UserError.of(exc)])
    return DestinationDeletePayload(deleted_id=input.id)


async def audience_push(info: Info, input: AudiencePushInput) -> AudiencePushPayload:
    """Check the group, destination and fields now (userErrors), then push as a background PUSH job."""
    ctx: Context = info.context
    ctx.require("pushes:write")
    try:
        params = await push_params(ctx, input)
        job_id = await insert_job(ctx.workspace_id, JobKind.PUSH, params, created_by=ctx.principal.actor)
    except DomainError as exc:
        return AudiencePushPayload(user_errors=[UserError.of(exc)])
    await enqueue_attempt(info.context.request.app.state.redis, job_id, 1)
    return AudiencePushPayload(job=Job.from_row(await job_row(ctx.workspace_id, job_id)))


async def push_params(ctx: Context, input: AudiencePushInput) -> dict[str, object]:
    """The PUSH job's params; another workspace's group or destination is simply not found."""
    group_id = from_global_id(input.group_id, "Group", ["groupId"])[1]
    destination_id = from_global_id(input.destination_id, "Destination", ["destinationId"])[1]
    if not await db.fetchval("SELECT 1 FROM groups WHERE workspace_id = $1 AND id = $2", ctx.workspace_id, group_id):
        raise NotFound("group", ["groupId"])
    destination = await domain.destination_row(ctx.workspace_id, destination_id)
    if destination is None:
        raise NotFound("destination", ["destinationId"])
    tags = {r["key"]: r["id"] for r in await db.fetch("SELECT key, id FROM tags WHERE workspace_id = $1",
                                                      ctx.workspace_id)}
    fields = readable_fields(
        ctx.principal, tags, fields=input.fields,
        identity_types=[t.value for t in input.identity_types] if input.identity_types is not None else None,
        tag_keys=input.tag_keys)
    if DestinationKind(destination["kind"]) is DestinationKind.DATABANK:
        identity_type = domain.databank_config(destination).identity_type
        if not ctx.principal.can_read_identity(identity_type):  # hashing does not make it the key's to send
            raise DomainError("FIELD_NOT_READABLE", f"this API key may not read {identity_type} identities",
                              ["destinationId"])
    return {"destination_id": destination_id, "group_id": group_id, "group_global_id": to_global_id("Group", group_id),
            "fields": fields.to_json(), "requested_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
