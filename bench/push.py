"""Push a whole-workspace group (1M users by default) to a local tansu broker through the PUSH job path.

Prints the job's msg/s and a floor measured in the same run: the same producer code sending the same
number of pre-built messages of the same size (no database), so the ratio shows what reading and
building the messages costs. Uses its own database (roster_bench_push) and a tansu broker it starts.

    .venv/bin/python bench/push.py [--users 1000000]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed import database_url, seed  # noqa: E402
from models import db  # noqa: E402
from models.audiences import PushFields, batch_end, message_batch, message_sql  # noqa: E402

BENCH_DB = "roster_bench_push"
GROUP = "Everyone (push bench)"


async def everyone_group(users: int) -> int:
    """A group holding every user of workspace 1 (the seed's groups hold ~15% each)."""
    group_id = await db.fetchval(
        "INSERT INTO groups (workspace_id, name, source, labels, created_at) VALUES (1, $1, 'MANUAL', '[]', now())"
        " ON CONFLICT (workspace_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id", GROUP)
    if await db.fetchval("SELECT count(*) FROM group_members WHERE workspace_id = 1 AND group_id = $1",
                         group_id) != users:
        await db.execute("INSERT INTO group_members (workspace_id, group_id, user_id, source, added_at)"
                         " SELECT 1, $1, id, 'MANUAL', now() FROM users WHERE workspace_id = 1"
                         " ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING", group_id)
        await db.execute("VACUUM ANALYZE group_members")
    return group_id


async def topic_size(bootstrap: str, topic: str) -> int:
    """Messages on the topic, counted by reading them back (tansu 0.6's end offsets undercount)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    count = idle = 0
    try:
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=500, max_records=100_000)
            got = sum(len(b) for b in batches.values())
            count, idle = count + got, 0 if got else idle + 1
    finally:
        await consumer.stop()
    return count


async def bench_fields() -> PushFields:
    """What a typical push carries: five profile fields, phone and email, every tag."""
    tags = [r["id"] for r in await db.fetch("SELECT id FROM tags WHERE workspace_id = 1 ORDER BY key")]
    return PushFields(("display_name", "gender", "city", "country", "member_level"), ("PHONE", "EMAIL"), tuple(tags))


async def push_job(group_id: int, destination_id: int) -> tuple[float, dict]:
    from jobs.runner import run_job
    from models.enums import JobKind
    from models.jobs import insert_job
    from schema.common import to_global_id

    fields = await bench_fields()
    params = {"destination_id": destination_id, "group_id": group_id, "group_global_id": to_global_id("Group", group_id),
              "fields": fields.to_json(), "requested_at": "2026-11-22T00:00:00.000+00:00"}
    job_id = await insert_job(1, JobKind.PUSH, params, created_by="bench")
    started = time.perf_counter()
    outcome = await run_job({}, job_id, 1)  # what the worker runs, minus arq
    seconds = time.perf_counter() - started
    row = await db.fetchrow("SELECT status, counts, error FROM jobs WHERE id = $1", job_id)
    assert outcome == "succeeded", (outcome, dict(row))
    return seconds, db.json_value(row["counts"])


async def floor(bootstrap: str, topic: str, count: int, sample: bytes) -> float:
    """The producer alone: the job's KafkaSink sending `count` pre-built messages in the job's batch size."""
    from jobs.kafka_sink import KafkaSink
    from models.destinations import KafkaConfig
    from settings import get_settings

    records = [(f"VXNlcjo{i}".encode(), sample) for i in range(count)]
    config = KafkaConfig(bootstrap_servers=[bootstrap], topic=topic, idempotence=False)
    batch = get_settings().push_batch_size
    started = time.perf_counter()
    async with KafkaSink(config, {}) as sink:
        pending: list = []
        for start in range(0, count, batch):
            futures = await sink.send(records[start:start + batch])
            await asyncio.gather(*pending)
            pending = futures
        await asyncio.gather(*pending)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    args = parser.parse_args()
    from tortoise import Tortoise

    from models.destinations import create_destination, kafka_destination
    from tests.brokers import Tansu

    url = await database_url(BENCH_DB)
    await seed(url, args.users)
    broker = Tansu(Path(tempfile.gettempdir()) / "roster-bench-tansu.log")
    bootstrap = broker.start()
    # The job reads PUSH_READERS batches at once and needs one more connection for checkpoints.
    await Tortoise.init(config=db.tortoise_config(url, pool_max=6))
    try:
        group_id = await everyone_group(args.users)
        await db.execute("DELETE FROM destinations WHERE workspace_id = 1")
        # tansu 0.6 refuses aiokafka's InitProducerId v0: no idempotence here (acks=all still).
        destination = await create_destination(1, kafka_destination(
            "bench", [bootstrap], "push-bench", tls=False, sasl_mechanism=None, sasl_username=None,
            sasl_password=None, idempotence=False, compression="NONE"))
        seconds, counts = await push_job(group_id, destination["id"])
        delivered = await topic_size(bootstrap, "push-bench")
        fields = await bench_fields()
        _, first = await batch_end(1, group_id, 0, 1)
        row = (await message_batch(message_sql(fields), 1, group_id, 0, first, 1, fields, "R3JvdXA6MQ",
                                   "2026-11-22"))[0]
        floor_s = await floor(bootstrap, "push-bench-floor", args.users, row["message"])
        print(f"push of {counts['messages']:,} users ({delivered:,} messages on the topic, ~{len(row['message'])} B"
              f" each): {seconds:.1f} s = {counts['messages'] / seconds:,.0f} msg/s")
        print(f"floor (same producer, pre-built messages): {floor_s:.1f} s = {args.users / floor_s:,.0f} msg/s;"
              f" push/floor = {seconds / floor_s:.2f}x")
    finally:
        await Tortoise.close_connections()
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
