"""Destinations and audience pushes: a real tansu broker, a real HTTP receiver, a real arq worker.

Messages are read back with aiokafka; the Data Bank receiver checks every signature and can answer
with failures on purpose.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobs import databank
from jobs.databank import RetryPolicy
from jobs.kafka_sink import KafkaSink, producer_options
from models import audiences
from models.destinations import KafkaConfig
from models.errors import DomainError
from models.enums import Role
from schema.common import to_global_id
from settings import get_settings
from tests import factories as f
from tests.conftest import Api, make_workspace, other_key, work
from tests.processes import free_port

CREATE = """mutation($input: DestinationCreateInput!) { destinationCreate(input: $input) {
  destination { id kind name hasSecret kafka { bootstrapServers topic tls saslMechanism saslUsername idempotence }
    databank { endpoint accessKeyId identityType hash batchSize } }
  userErrors { field code message } } }"""
DESTINATIONS = """{ destinations(first: 10) { totalCount edges { node { id name kind hasSecret
  kafka { topic saslUsername } databank { endpoint accessKeyId } } } } }"""
DELETE = "mutation($id: ID!) { destinationDelete(input: {id: $id}) { deletedId userErrors { field code } } }"
PUSH = """mutation($input: AudiencePushInput!) { audiencePush(input: $input) {
  job { id kind status } userErrors { field code message } } }"""
JOB = "query($id: ID!) { job(id: $id) { status error counts progress { done total } } }"
CANCEL = "mutation($id: ID!) { jobCancel(input: {id: $id}) { job { status } userErrors { code } } }"
UPSERT = """mutation($input: ContactsUpsertInput!) { contactsUpsert(input: $input) {
  users { id } userErrors { field code message } } }"""
TAG = "mutation($input: UsersTagInput!) { usersTag(input: $input) { usersAffected userErrors { code } } }"
SECRET = "s3cr3t-access-key-0123456789"



async def audience(api: Api, size: int, name: str = "Leads") -> tuple[dict[str, Any], list[str]]:
    """A group of `size` contacts with CN phones (+861300000000i), tier=gold and city set; plus a non-member."""
    group = await f.group(api, name)
    other = await f.group(api, f"{name} elsewhere")
    contacts = [{"region": "CN", "phone": f"1300000{i:04d}", "name": f"Contact {i}"} for i in range(size)]
    users = (await api.ok(UPSERT, input={"groupIds": [group["id"]], "contacts": contacts}))["users"]
    await api.ok(UPSERT, input={"groupIds": [other["id"]], "contacts": [
        {"region": "CN", "phone": "13999999999", "name": "Not pushed"}]})
    await f.tag(api, "tier")
    await f.tag(api, "secret_score")
    target = {"filter": {"groupIds": [group["id"]]}}
    await api.ok(TAG, input={"target": target, "key": "tier", "values": ["gold"]})
    await api.ok(TAG, input={"target": target, "key": "secret_score", "values": ["42"]})
    return group, [u["id"] for u in users]


async def kafka_destination(api: Api, bootstrap: str, topic: str, name: str = "Stream") -> dict[str, Any]:
    # tansu 0.6 cannot give aiokafka a producer id (its InitProducerId v0 is refused), so tests turn the
    # idempotent producer off; test_kafka_producer_is_idempotent_with_acks_all_by_default covers the default.
    return (await api.ok(CREATE, input={"name": name, "kafka": {
        "bootstrapServers": [bootstrap], "topic": topic, "idempotence": False}}))["destination"]


async def consume(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    messages: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                messages += batch
            if len(messages) >= expected:
                # a short extra poll: more than expected must show up as a failure, not be ignored
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    messages += batch
                break
    finally:
        await consumer.stop()
    return messages


async def push(api: Api, group_id: str, destination_id: str, **extra: Any) -> dict[str, Any]:
    return (await api(PUSH, input={"groupId": group_id, "destinationId": destination_id, **extra}))["audiencePush"]


async def job(api: Api, job_id: str) -> dict[str, Any]:
    return (await api(JOB, id=job_id))["job"]


# --- destinations ---------------------------------------------------------------------------------------

async def test_destination_create_reports_invalid_input_with_codes(api: Api) -> None:
    kafka = {"bootstrapServers": ["127.0.0.1:9092"], "topic": "audiences"}
    sasl = {"mechanism": "SCRAM_SHA_256", "username": "u", "password": "kafka-password"}
    bank = {"endpoint": "https://bank.example.com/v1/audiences", "accessKeyId": "AK1", "accessKeySecret": SECRET,
            "identityType": "PHONE", "hash": "SHA256"}
    cases = [
        ({"name": "x", "kafka": {**kafka, "bootstrapServers": ["no-port"]}}, "INVALID_BOOTSTRAP_SERVERS"),
        ({"name": "x", "kafka": {**kafka, "bootstrapServers": ["host:99999"]}}, "INVALID_BOOTSTRAP_SERVERS"),
        ({"name": "x", "kafka": {**kafka, "topic": "bad topic!"}}, "INVALID_TOPIC"),
        ({"name": "x", "kafka": {**kafka, "sasl": {"mechanism": "PLAIN", "username": "u", "password": ""}}},
         "INVALID_SASL"),
        # SASL without TLS would send the password in plaintext: only to a loopback broker
        ({"name": "x", "kafka": {**kafka, "bootstrapServers": ["kafka-1.example.com:9092"], "sasl": sasl}},
         "TLS_REQUIRED"),
        ({"name": "x", "kafka": {**kafka, "bootstrapServers": ["127.0.0.1:9092", "10.0.0.5:9092"], "sasl": sasl}},
         "TLS_REQUIRED"),
        ({"name": "x", "databank": {**bank, "endpoint": "http://bank.example.com/"}}, "INSECURE_ENDPOINT"),
        ({"name": "x", "databank": {**bank, "endpoint": "ftp://bank.example.com/"}}, "INVALID_ENDPOINT"),
        ({"name": "x", "databank": {**bank, "identityType": "INSTAGRAM"}}, "UNSUPPORTED_IDENTITY_TYPE"),
        ({"name": "x", "databank": {**bank, "accessKeySecret": "short"}}, "INVALID_ACCESS_KEY"),
        ({"name": "x", "databank": {**bank, "batchSize": 20000}}, "INVALID_BATCH_SIZE"),
        ({"name": "x", "kafka": kafka, "databank": bank}, "KIND_REQUIRED"),
        ({"name": "x"}, "KIND_REQUIRED"),
        ({"name": "  ", "kafka": kafka}, "INVALID_NAME"),
    ]
    for input_, code in cases:
        payload = (await api(CREATE, input=input_))["destinationCreate"]
        assert payload["destination"] is None and [e["code"] for e in payload["userErrors"]] == [code], input_

    await api.ok(CREATE, input={"name": "Bank", "databank": {**bank, "endpoint": "http://127.0.0.1:8080/in"}})
    duplicate = (await api(CREATE, input={"name": "Bank", "kafka": kafka}))["destinationCreate"]
    assert duplicate["userErrors"][0]["code"] == "NAME_TAKEN"


async def test_destinations_never_return_secrets(api: Api) -> None:
    await api.ok(CREATE, input={"name": "Bank", "databank": {
        "endpoint": "https://bank.example.com/in", "accessKeyId": "AK1", "accessKeySecret": SECRET,
        "identityType": "EMAIL", "hash": "MD5", "batchSize": 1000}})
    created = await api.ok(CREATE, input={"name": "Stream", "kafka": {
        "bootstrapServers": ["kafka-1.internal:9093", "[::1]:9093"], "topic": "audiences", "tls": True,
        "sasl": {"mechanism": "SCRAM_SHA_512", "username": "roster", "password": "hunter2-kafka-password"}}})
    assert created["destination"]["kafka"]["saslMechanism"] == "SCRAM_SHA_512"
    assert created["destination"]["kafka"]["idempotence"] is True

    body = await api.raw(DESTINATIONS)
    text = orjson.dumps(body).decode()
    assert SECRET not in text and "hunter2" not in text
    nodes = [e["node"] for e in body["data"]["destinations"]["edges"]]
    assert [(n["name"], n["kind"], n["hasSecret"]) for n in nodes] == [("Bank", "DATABANK", True),
                                                                       ("Stream", "KAFKA", True)]
    assert nodes[0]["databank"] == {"endpoint": "https://bank.example.com/in", "accessKeyId": "AK1"}
    assert body["data"]["destinations"]["totalCount"] == 2


async def test_only_admin_keys_create_or_delete_destinations(api: Api) -> None:
    operator = await other_key(api, Role.OPERATOR)
    denied = await operator.raw(CREATE, {"input": {"name": "x", "kafka": {
        "bootstrapServers": ["127.0.0.1:9092"], "topic": "t"}}})
    assert denied["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    created = (await api.ok(CREATE, input={"name": "x", "kafka": {
        "bootstrapServers": ["127.0.0.1:9092"], "topic": "t"}}))["destination"]
    assert (await operator.raw(DELETE, {"id": created["id"]}))["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert (await operator(DESTINATIONS))["destinations"]["totalCount"] == 1  # operators pick destinations
    assert (await api.ok(DELETE, id=created["id"]))["deletedId"] == created["id"]
    assert (await api(DELETE, id=created["id"]))["destinationDelete"]["userErrors"][0]["code"] == "NOT_FOUND"


async def test_sasl_without_tls_is_accepted_only_to_loopback_brokers(api: Api) -> None:
    sasl = {"mechanism": "PLAIN", "username": "u", "password": "kafka-password"}
    local = await api.ok(CREATE, input={"name": "Local", "kafka": {
        "bootstrapServers": ["localhost:9092", "127.0.0.1:9093", "[::1]:9094"], "topic": "t", "sasl": sasl}})
    assert local["destination"]["kafka"]["tls"] is False
    remote = await api.ok(CREATE, input={"name": "Remote", "kafka": {
        "bootstrapServers": ["kafka-1.example.com:9093"], "topic": "t", "tls": True, "sasl": sasl}})
    assert remote["destination"]["kafka"]["saslMechanism"] == "PLAIN"
    # a destination stored before the check: the producer refuses to send its password in plaintext
    with pytest.raises(DomainError) as refused:
        producer_options(KafkaConfig(bootstrap_servers=["kafka-1.example.com:9092"], topic="t",
                                     sasl_mechanism="PLAIN", sasl_username="u"), {"sasl_password": "p"})
    assert refused.value.code == "TLS_REQUIRED"
    assert producer_options(KafkaConfig(bootstrap_servers=["127.0.0.1:9092"], topic="t", sasl_mechanism="PLAIN",
                                        sasl_username="u"), {"sasl_password": "p"})["security_protocol"] \
        == "SASL_PLAINTEXT"


async def test_kafka_sink_stops_the_producer_when_start_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = KafkaSink(KafkaConfig(bootstrap_servers=["127.0.0.1:9"], topic="t"), {})
    stopped: list[bool] = []
    real_stop = sink.producer.stop

    async def start() -> None:  # as when the bootstrap connection opened, then authentication failed
        raise KafkaConnectionError("authentication failed")

    async def stop() -> None:
        stopped.append(True)
        await real_stop()

    monkeypatch.setattr(sink.producer, "start", start)
    monkeypatch.setattr(sink.producer, "stop", stop)
    with pytest.raises(KafkaConnectionError):
        async with sink:
            pass
    assert stopped == [True]


def test_kafka_producer_is_idempotent_with_acks_all_by_default() -> None:
    options = producer_options(KafkaConfig(bootstrap_servers=["b:9092"], topic="t", tls=True,
                                           sasl_mechanism="SCRAM-SHA-256", sasl_username="u"),
                               {"sasl_password": "p"})
    assert options["acks"] == "all" and options["enable_idempotence"] is True
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("u", "p")
    assert options["ssl_context"] is not None and options["linger_ms"] > 0


# --- Kafka pushes -------------------------------------------------------------------------------------------

async def test_kafka_push_sends_one_message_per_member_with_only_the_fields_the_key_may_read(
        api: Api, redis_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "push_batch_size", 7)  # several batches, each checkpointed
    group, user_ids = await audience(api, 30)
    topic = f"audiences-{uuid.uuid4().hex[:8]}"
    destination = await kafka_destination(api, kafka_bootstrap, topic)
    partner = await other_key(api, Role.PARTNER, ["pushes:write", "field:city:read", "field:display_name:read",
                                                  "identity:PHONE:read", "tag:tier:read"])

    refused = await push(partner, group["id"], destination["id"], fields=["nickname"])
    assert refused["userErrors"][0]["code"] == "FIELD_NOT_READABLE" and refused["job"] is None
    refused = await push(partner, group["id"], destination["id"], tagKeys=["secret_score"])
    assert refused["userErrors"][0]["code"] == "UNKNOWN_TAG"

    started = await push(partner, group["id"], destination["id"])
    assert started["userErrors"] == [] and started["job"]["kind"] == "PUSH"
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["counts"] == {"users": 30, "messages": 30} and done["progress"] == {"done": 30, "total": 30}

    messages = await consume(kafka_bootstrap, topic, 30)
    assert len(messages) == 30
    assert sorted(m.key.decode() for m in messages) == sorted(user_ids)
    by_key = {m.key.decode(): orjson.loads(m.value) for m in messages}
    first = by_key[user_ids[0]]
    assert first["id"] == user_ids[0] and first["groupId"] == group["id"] and first["pushedAt"]
    assert first["profile"] == {"displayName": "Contact 0", "city": None}  # no nickname, gender, ...
    assert first["identities"] == [{"type": "PHONE", "value": "+8613000000000"}]
    assert first["tags"] == {"tier": ["gold"]}  # secret_score is not the partner's to read


async def test_kafka_push_of_chosen_fields_by_an_operator(api: Api, redis_url: str, kafka_bootstrap: str) -> None:
    group, user_ids = await audience(api, 3)
    topic = f"audiences-{uuid.uuid4().hex[:8]}"
    destination = await kafka_destination(api, kafka_bootstrap, topic)
    operator = await other_key(api, Role.OPERATOR)
    started = await push(operator, group["id"], destination["id"], fields=["displayName"], identityTypes=[],
                         tagKeys=["secret_score", "tier"])
    await work(redis_url)
    assert (await job(api, started["job"]["id"]))["status"] == "SUCCEEDED"
    values = [orjson.loads(m.value) for m in await consume(kafka_bootstrap, topic, 3)]
    assert len(values) == 3
    assert {(v["id"], v["profile"]["displayName"]) for v in values} == {
        (uid, f"Contact {i}") for i, uid in enumerate(user_ids)}
    assert all(v["identities"] == [] and v["tags"] == {"secret_score": ["42"], "tier": ["gold"]} for v in values)


async def test_kafka_push_of_a_sparse_group_reads_members_only_and_in_concurrent_ranges(
        api: Api, redis_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every fifth user is a member: a batch of 2 members spans ~10 user ids, more than twice the batch,
    # so identities and tags are looked up per member (the sparse statement), 3 ranges read at once.
    monkeypatch.setattr(get_settings(), "push_batch_size", 2)
    statements: list[str] = []
    real_batch = audiences.message_batch

    async def spy(sql: str, *args: Any) -> list[Any]:
        statements.append(sql)
        return await real_batch(sql, *args)

    monkeypatch.setattr(audiences, "message_batch", spy)
    group = await f.group(api, "Sparse")
    other = await f.group(api, "Others")
    members = []
    for i in range(20):
        target = group if i % 5 == 0 else other
        users = (await api.ok(UPSERT, input={"groupIds": [target["id"]], "contacts": [
            {"region": "CN", "phone": f"1310000{i:04d}", "name": f"Sparse {i}"}]}))["users"]
        if target is group:
            members.append(users[0]["id"])
    await f.tag(api, "tier")
    await api.ok(TAG, input={"target": {"filter": {"groupIds": [group["id"]]}}, "key": "tier", "values": ["gold"]})
    topic = f"audiences-{uuid.uuid4().hex[:8]}"
    destination = await kafka_destination(api, kafka_bootstrap, topic)
    started = await push(api, group["id"], destination["id"], fields=["displayName"], identityTypes=["PHONE"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["counts"] == {"users": 4, "messages": 4}
    assert statements and all("IN (SELECT user_id FROM m)" in sql for sql in statements)

    messages = await consume(kafka_bootstrap, topic, 4)
    values = {m.key.decode(): orjson.loads(m.value) for m in messages}
    assert len(messages) == 4 and sorted(values) == sorted(members)
    for i, uid in zip(range(0, 20, 5), members):
        assert values[uid] == {"id": uid, "groupId": group["id"], "pushedAt": values[uid]["pushedAt"],
                               "profile": {"displayName": f"Sparse {i}"},
                               "identities": [{"type": "PHONE", "value": f"+861310000{i:04d}"}],
                               "tags": {"tier": ["gold"]}}


async def test_kafka_push_reads_a_range_holding_more_members_than_sized_in_parts(
        api: Api, redis_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Members added to a range after it was sized: the read stops at its guard (2 × batch) and the
    # rest of the range is read next, so nobody is skipped or sent twice.
    monkeypatch.setattr(get_settings(), "push_batch_size", 7)
    real_end = audiences.batch_end

    async def one_big_range(workspace_id: int, group_id: int, after: int, size: int) -> tuple[int, int] | None:
        return await real_end(workspace_id, group_id, after, 1000)

    monkeypatch.setattr(audiences, "batch_end", one_big_range)
    group, user_ids = await audience(api, 30)
    topic = f"audiences-{uuid.uuid4().hex[:8]}"
    destination = await kafka_destination(api, kafka_bootstrap, topic)
    started = await push(api, group["id"], destination["id"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["counts"] == {"users": 30, "messages": 30}
    messages = await consume(kafka_bootstrap, topic, 30)
    assert sorted(m.key.decode() for m in messages) == sorted(user_ids)


# --- Data Bank pushes ---------------------------------------------------------------------------------------

@dataclass
class Receiver:
    """A Data Bank stand-in: verifies signatures, records accepted batches, fails on request."""

    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    bad_signatures: int = 0
    keys: list[str] = field(default_factory=list)
    # (call number starting at 1) -> status to answer instead of accepting
    fail: Callable[[int], int | None] = lambda call: None
    on_accept: Callable[[], Any] | None = None

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        body = await request.body()
        timestamp = request.headers["X-Roster-Timestamp"]
        expected = "v1=" + hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if request.headers.get("X-Roster-Key-Id") != "AK1" or not hmac.compare_digest(
                expected, request.headers["X-Roster-Signature"]):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.keys.append(request.headers["Idempotency-Key"])
        status = self.fail(self.calls)
        if status is not None:
            return JSONResponse({"error": f"injected {status}"}, status_code=status)
        self.accepted.append(orjson.loads(body))
        if self.on_accept is not None:
            await self.on_accept()
        return JSONResponse({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/audiences", state.handle, methods=["POST"])]),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    state.url = f"http://127.0.0.1:{port}/audiences"
    yield state
    server.should_exit = True
    await task


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(databank, "DEFAULT_RETRY", RetryPolicy(attempts=4, base_s=0.01, timeout_s=5))


async def bank_destination(api: Api, url: str, batch_size: int = 10, hash_: str = "SHA256") -> dict[str, Any]:
    return (await api.ok(CREATE, input={"name": "Bank", "databank": {
        "endpoint": url, "accessKeyId": "AK1", "accessKeySecret": SECRET, "identityType": "PHONE",
        "hash": hash_, "batchSize": batch_size}}))["destination"]


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def test_databank_push_posts_signed_batches_of_hashed_phones_and_retries_503(
        api: Api, redis_url: str, receiver: Receiver) -> None:
    receiver.fail = lambda call: 503 if call <= 2 else None  # the first batch needs two retries
    group, _ = await audience(api, 25)
    destination = await bank_destination(api, receiver.url)
    started = await push(api, group["id"], destination["id"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["counts"] == {"users": 25, "identifiers": 25, "unmatched": 0, "requests": 3, "retries": 2}
    assert receiver.bad_signatures == 0 and receiver.calls == 5
    assert [len(b["identifiers"]) for b in receiver.accepted] == [10, 10, 5]
    assert receiver.keys[0] == receiver.keys[1] == receiver.keys[2]  # a retry repeats its idempotency key
    assert {b["idType"] for b in receiver.accepted} == {"PHONE_SHA256"}
    pushed = {h for b in receiver.accepted for h in b["identifiers"]}
    assert pushed == {sha256(f"+861300000{i:04d}") for i in range(25)}  # SHA256 of the E.164 phone
    assert sha256("+8613999999999") not in pushed  # not a member


async def test_databank_push_retries_any_5xx_and_honours_retry_after(
        api: Api, redis_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.fail = lambda call: 520 if call == 1 else None  # Cloudflare's "unknown error", not in a fixed list
    group, _ = await audience(api, 5)
    destination = await bank_destination(api, receiver.url)
    started = await push(api, group["id"], destination["id"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["counts"]["retries"] == 1 and receiver.calls == 2 and len(receiver.accepted) == 1

    # A numeric Retry-After replaces the backoff, capped at max_s; a date or garbage falls back to it.
    assert databank.retry_after("2", 30.0) == 2.0 and databank.retry_after("120", 30.0) == 30.0
    assert databank.retry_after("Wed, 21 Oct 2026 07:28:00 GMT", 30.0) is None
    assert databank.retry_after(None, 30.0) is None and databank.retry_after("-1", 30.0) is None
    assert [s for s in (400, 401, 404, 408, 422, 425, 429, 500, 501, 503, 520, 599) if databank.retryable(s)] == [
        408, 425, 429, 500, 501, 503, 520, 599]
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(0)

    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(503),
                    httpx.Response(200)])
    config = databank.DatabankConfig(endpoint=receiver.url, access_key_id="AK1", identity_type="PHONE",
                                     hash="SHA256")
    policy = RetryPolicy(attempts=4, base_s=0.01, max_s=5.0, timeout_s=5)
    async with databank.DatabankClient(config, SECRET, policy) as client:
        real_http, client.http = client.http, httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: next(answers)))
        await real_http.aclose()
        with monkeypatch.context() as patch:
            patch.setattr(databank.asyncio, "sleep", record_sleep)
            assert await client.post(b"{}", "key", "batch 1") == 3
    assert sleeps[0] == 5.0 and 0.02 <= sleeps[1] <= 0.024  # Retry-After 7 capped at 5 s, then the 2nd backoff


async def test_databank_push_fails_with_the_reason_when_retries_run_out(
        api: Api, redis_url: str, receiver: Receiver) -> None:
    receiver.fail = lambda call: 500 if call >= 2 else None  # the first batch goes through, then never again
    group, _ = await audience(api, 25)
    destination = await bank_destination(api, receiver.url)
    started = await push(api, group["id"], destination["id"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "FAILED"
    assert "did not accept batch 2" in done["error"] and "HTTP 500" in done["error"] and "4 tries" in done["error"]
    assert receiver.calls == 1 + 4 and len(receiver.accepted) == 1
    assert done["progress"]["done"] == 10  # the accepted batch is checkpointed, nothing after it


async def test_databank_push_does_not_retry_a_4xx(api: Api, redis_url: str, receiver: Receiver) -> None:
    receiver.fail = lambda call: 400
    group, _ = await audience(api, 5)
    destination = await bank_destination(api, receiver.url)
    started = await push(api, group["id"], destination["id"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "FAILED" and "refused batch 1" in done["error"] and "HTTP 400" in done["error"]
    assert receiver.calls == 1


async def test_databank_push_stops_between_batches_when_cancelled(
        api: Api, redis_url: str, receiver: Receiver) -> None:
    group, _ = await audience(api, 25)
    destination = await bank_destination(api, receiver.url)
    started = await push(api, group["id"], destination["id"])

    async def cancel_once() -> None:
        if len(receiver.accepted) == 1:
            await api.ok(CANCEL, id=started["job"]["id"])

    receiver.on_accept = cancel_once
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "CANCELLED" and len(receiver.accepted) == 1


async def test_databank_push_sends_identities_already_hashed_the_same_way(
        api: Api, redis_url: str, receiver: Receiver) -> None:
    group = await f.group(api, "Hashed")
    md5_of_phone = hashlib.md5(b"+8613012345678").hexdigest()
    await f.user(api, "hashed", groupIds=[group["id"]], identities=[
        {"type": "PHONE", "value": md5_of_phone.upper(), "encryption": "MD5"}])
    await f.user(api, "nophone", email="a@example.com", groupIds=[group["id"]])
    destination = await bank_destination(api, receiver.url, hash_="MD5")
    started = await push(api, group["id"], destination["id"])
    await work(redis_url)
    done = await job(api, started["job"]["id"])
    assert done["status"] == "SUCCEEDED" and done["counts"]["unmatched"] == 1
    assert receiver.accepted[0]["identifiers"] == [md5_of_phone]


# --- tenancy ------------------------------------------------------------------------------------------------

async def test_another_workspace_cannot_push_to_my_destination_or_my_group(
        api: Api, client: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    group, _ = await audience(api, 2)
    destination = await kafka_destination(api, kafka_bootstrap, "mine")
    stranger = await make_workspace(client, name="Other")
    their_group = await f.group(stranger, "Theirs")
    their_destination = await kafka_destination(stranger, kafka_bootstrap, "theirs")

    assert (await push(stranger, their_group["id"], destination["id"]))["userErrors"][0] == {
        "field": ["destinationId"], "code": "NOT_FOUND", "message": "destination not found"}
    assert (await push(stranger, group["id"], their_destination["id"]))["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await stranger(DESTINATIONS))["destinations"]["totalCount"] == 1
    assert (await stranger(DELETE, id=destination["id"]))["destinationDelete"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert to_global_id("Destination", 1) == destination["id"]
