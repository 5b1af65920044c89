"""The PUSH job: send a group's users to a destination (a Kafka topic or a Data Bank), batch by batch.

The checkpoint is the last user id whose batch the destination acknowledged; a resumed attempt starts
after it (delivery is at least once: a batch in flight when a worker died is sent again). Cancelling
stops before the next batch.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from jobs import databank
from jobs.databank import DatabankClient
from jobs.kafka_sink import KafkaSink
from jobs.runner import HANDLERS, JobResult, JobRun
from models import audiences, db
from models.destinations import databank_config, destination_row, kafka_config, secrets_of
from models.enums import DestinationKind, JobKind
from models.errors import DomainError

KAFKA_BATCH = 10_000  # users read (one SQL statement) and produced per checkpoint


@dataclass
class PushParams:
    """What audiencePush stored in the job's params (no secrets: those stay on the destination)."""

    destination_id: int
    group_id: int
    group_global_id: str
    fields: audiences.PushFields
    requested_at: str

    @classmethod
    def from_json(cls, params: dict[str, Any]) -> PushParams:
        return cls(params["destination_id"], params["group_id"], params["group_global_id"],
                   audiences.PushFields.from_json(params["fields"]), params["requested_at"])


async def run_push(run: JobRun) -> JobResult:
    params = PushParams.from_json(run.params)
    destination = await destination_row(run.workspace_id, params.destination_id)
    if destination is None:
        raise DomainError("DESTINATION_NOT_FOUND", "the destination was deleted")
    if not await db.fetchval("SELECT 1 FROM groups WHERE workspace_id = $1 AND id = $2",
                             run.workspace_id, params.group_id):
        raise DomainError("GROUP_NOT_FOUND", "the group was deleted")
    checkpoint = run.checkpoint or {}
    if not checkpoint:
        await run.set_total(await audiences.member_count(run.workspace_id, params.group_id))
    if DestinationKind(destination["kind"]) is DestinationKind.KAFKA:
        counts = await _push_to_kafka(run, params, destination, checkpoint)
    else:
        counts = await _push_to_databank(run, params, destination, checkpoint)
    return JobResult(counts=counts)


async def _push_to_kafka(run: JobRun, params: PushParams, destination: Any, checkpoint: dict[str, Any]
                         ) -> dict[str, int]:
    """Read batch N+1 while batch N is in flight; checkpoint N once the broker acknowledged all of it."""
    counts = Counter({"users": 0, "messages": 0, **checkpoint.get("counts", {})})
    after = checkpoint.get("last_user_id", 0)
    sql = audiences.message_sql(params.fields)

    def read(after_id: int) -> asyncio.Task[list[Any]]:
        return asyncio.create_task(audiences.message_batch(
            sql, run.workspace_id, params.group_id, after_id, KAFKA_BATCH, params.fields,
            params.group_global_id, params.requested_at))

    async with KafkaSink(kafka_config(destination), secrets_of(destination)) as sink:
        next_rows = read(after)
        in_flight: tuple[list[asyncio.Future[Any]], int, int] | None = None
        try:
            while rows := await next_rows:
                next_rows = read(rows[-1]["user_id"])
                await run.check_cancelled()
                futures = await sink.send([(r["key"].encode(), r["message"].encode()) for r in rows])
                if in_flight is not None:
                    await _acknowledged(run, counts, *in_flight)
                in_flight = (futures, rows[-1]["user_id"], len(rows))
            if in_flight is not None:
                await _acknowledged(run, counts, *in_flight)
        finally:
            next_rows.cancel()
    return dict(counts)


async def _acknowledged(run: JobRun, counts: Counter[str], futures: list[asyncio.Future[Any]], last_user_id: int,
                        sent: int) -> None:
    await asyncio.gather(*futures)  # a delivery error (after aiokafka's own retries) fails the job
    counts["users"] += sent
    counts["messages"] += sent
    await run.save(None, checkpoint={"last_user_id": last_user_id, "counts": dict(counts)},
                   done=counts["users"], counts=dict(counts))


async def _push_to_databank(run: JobRun, params: PushParams, destination: Any, checkpoint: dict[str, Any]
                            ) -> dict[str, int]:
    """One signed POST per batch of users; the next batch is read only once this one was accepted."""
    config = databank_config(destination)
    counts = Counter({"users": 0, "identifiers": 0, "unmatched": 0, "requests": 0, "retries": 0,
                      **checkpoint.get("counts", {})})
    after = checkpoint.get("last_user_id", 0)
    async with DatabankClient(config, secrets_of(destination)["access_key_secret"], databank.DEFAULT_RETRY) as client:
        while True:
            await run.check_cancelled()
            batch = await audiences.hashed_batch(run.workspace_id, params.group_id, after, config.batch_size,
                                                 identity_type=config.identity_type, algorithm=config.hash)
            if batch.last_user_id is None:
                break
            if batch.identifiers:
                sequence = counts["requests"] + 1
                body = orjson.dumps({
                    "job": f"{run.id}", "batch": sequence, "groupId": params.group_global_id,
                    "idType": f"{config.identity_type}_{config.hash}", "pushedAt": params.requested_at,
                    "identifiers": batch.identifiers})
                tries = await client.post(body, idempotency_key=f"roster-push-{run.id}-{after}",
                                          label=f"batch {sequence} (users after id {after})")
                counts["requests"] += 1
                counts["retries"] += tries - 1
            counts["users"] += batch.users
            counts["identifiers"] += len(batch.identifiers)
            counts["unmatched"] += batch.users - batch.matched_users
            after = batch.last_user_id
            await run.save(None, checkpoint={"last_user_id": after, "counts": dict(counts)},
                           done=counts["users"], counts=dict(counts))
    return dict(counts)


HANDLERS[JobKind.PUSH] = run_push
