"""The PUSH job: send a group's users to a destination (a Kafka topic or a Data Bank), batch by batch.

The checkpoint is the last user id whose batch the destination acknowledged, and every batch before
it was acknowledged too; a resumed attempt starts after it (delivery is at least once: the batches
read or in flight when a worker died are sent again). Cancelling stops before the next batch.
"""
from __future__ import annotations

import asyncio
from collections import Counter, deque
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
from settings import get_settings

# Settings PUSH_BATCH_SIZE (users read, one SQL statement, and produced per checkpoint) and PUSH_READERS
# (batches read at once), read when a push starts. Each read runs on its own pooled connection (the pool
# needs one more for sizing batches and checkpoints: db_pool_max >= PUSH_READERS + 1, or reads queue for
# connections). PostgreSQL building the JSON is the bottleneck. On 2 cores (bench/push.py): 2 readers
# ~90k msg/s, 3 ~101k, 4 ~108k: a backend stalls once its socket buffer is full while the worker is
# producing, so more reads than cores keep the cores busy. Memory: (PUSH_READERS + 1) batches.


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
    """Read up to PUSH_READERS batches at once while the previous one is in flight; checkpoint in order.

    Each batch is a disjoint user-id range (after, upto], sized up front by an index-only scan
    (`batch_end`), so the next batches' reads run concurrently on their own pooled connections:
    PostgreSQL builds their JSON on several cores. Batches are sent and acknowledged in id order,
    so the checkpoint (`last_user_id`, the end of the last acknowledged range) only ever passes
    users the broker acknowledged, whatever order the reads finish in.
    """
    counts = Counter({"users": 0, "messages": 0, **checkpoint.get("counts", {})})
    after = checkpoint.get("last_user_id", 0)
    batch_size, readers = get_settings().push_batch_size, get_settings().push_readers
    dense_sql = audiences.message_sql(params.fields, dense=True)
    sparse_sql = audiences.message_sql(params.fields, dense=False)
    limit = 2 * batch_size  # members added to a range after it was sized are read by a follow-up read

    def read(lo: int, hi: int, first: int) -> asyncio.Task[list[Any]]:
        # Range scans of identities and tags pay off when members fill most of the ids from the first one.
        sql = dense_sql if hi - first < 2 * batch_size else sparse_sql
        return asyncio.create_task(audiences.message_batch(
            sql, run.workspace_id, params.group_id, lo, hi, limit, params.fields,
            params.group_global_id, params.requested_at))

    reads: deque[tuple[int, asyncio.Task[list[Any]]]] = deque()  # (range end, read), in id order
    next_after: int | None = after  # None: every member has a read

    async def fill() -> None:
        nonlocal next_after
        while next_after is not None and len(reads) < readers:
            batch = await audiences.batch_end(run.workspace_id, params.group_id, next_after, batch_size)
            if batch is None:
                next_after = None
            else:
                reads.append((batch[1], read(next_after, batch[1], batch[0])))
                next_after = batch[1]

    async with KafkaSink(kafka_config(destination), secrets_of(destination)) as sink:
        in_flight: tuple[list[asyncio.Future[Any]], int, int] | None = None
        try:
            await fill()
            while reads:
                upto, task = reads.popleft()
                rows = await task
                if len(rows) == limit and rows[-1]["user_id"] < upto:  # the guard hit: read the rest next
                    reads.appendleft((upto, read(rows[-1]["user_id"], upto, rows[-1]["user_id"])))
                    upto = rows[-1]["user_id"]
                await fill()
                await run.check_cancelled()
                futures = await sink.send([(r[1], r[2]) for r in rows])  # key, message: bytes
                if in_flight is not None:
                    await _acknowledged(run, counts, *in_flight)
                in_flight = (futures, upto, len(rows))
            if in_flight is not None:
                await _acknowledged(run, counts, *in_flight)
        finally:
            for _, pending in reads:
                pending.cancel()
            await asyncio.gather(*(pending for _, pending in reads), return_exceptions=True)
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
