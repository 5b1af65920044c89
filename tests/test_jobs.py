"""Background jobs: a real arq worker runs them, users follow and cancel them through GraphQL.

Test handlers stand in for imports: each "batch" creates one group (something a user can see) and
commits it together with the job's checkpoint, like the real handlers do.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from arq.connections import RedisSettings
from arq.worker import Worker, func

from jobs import runner
from jobs.runner import HANDLERS, JobResult, JobRun, recover_stale_jobs, run_job
from models import db
from models.enums import JobKind, Role
from models.errors import DomainError
from models.jobs import enqueue_attempt, start_job
from resolvers import jobs as job_resolvers
from schema.common import from_global_id, to_global_id
from tests.conftest import Api, make_workspace, other_key

JOB = """query($id: ID!) { job(id: $id) { id kind status progress { done total } counts error attempts
  createdBy createdAt startedAt finishedAt resultFile { id name size } errorReport { id } } }"""
JOBS = """query($kinds: [JobKind!], $statuses: [JobStatus!], $first: Int, $after: String) {
  jobs(kinds: $kinds, statuses: $statuses, first: $first, after: $after) {
    totalCount edges { cursor node { id kind status } } pageInfo { hasNextPage endCursor } } }"""
CANCEL = """mutation($id: ID!) { jobCancel(input: {id: $id}) {
  job { id status finishedAt } userErrors { field code message } } }"""
GROUP_NAMES = "{ groups(first: 50) { edges { node { name } } } }"
PROGRESS = "subscription($id: ID!) { jobProgress(id: $id) { id status progress { done total } counts } }"
BATCHES = 3


@pytest.fixture(autouse=True)
async def empty_queue(app: Any) -> None:
    # Job ids restart with every test's tables: forget the previous test's arq jobs and results.
    await app.state.redis.flushdb()


async def work(redis_url: str, **options: Any) -> Worker:
    """Run an arq worker until the queue is empty (as `roster worker` would, minus the signals)."""
    worker = Worker(functions=[func(run_job, name="run_job", **options)],
                    redis_settings=RedisSettings.from_dsn(redis_url), burst=True, handle_signals=False,
                    poll_delay=0.05)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def start(app: Any, api: Api, kind: JobKind = JobKind.IMPORT, **params: Any) -> str:
    job_id = await start_job(api.workspace_id, kind, params, created_by="apikey:test", redis=app.state.redis)
    return to_global_id("Job", job_id)


async def job(api: Api, job_id: str) -> dict[str, Any]:
    return (await api(JOB, id=job_id))["job"]


async def group_names(api: Api) -> list[str]:
    return sorted(e["node"]["name"] for e in (await api(GROUP_NAMES))["groups"]["edges"])


Hook = Callable[[JobRun, int], Any]


def batch_handler(calls: list[tuple[int, Any]], before: Hook | None = None, after: Hook | None = None,
                  pause: float = 0.0) -> Callable[[JobRun], Any]:
    """A handler doing BATCHES batches from its checkpoint; hooks run before/after each batch's commit."""

    async def handle(run: JobRun) -> JobResult:
        calls.append((run.attempt, run.checkpoint))
        state = run.checkpoint or {"next": 0, "counts": {"rows": 0}}
        counts = dict(state["counts"])
        await run.set_total(BATCHES)
        for batch in range(state["next"], BATCHES):
            await run.check_cancelled()
            if before:
                await before(run, batch)
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO groups (workspace_id, name, labels, source, created_at)"
                                   " VALUES ($1, $2, '[]', 'IMPORT', now())", run.workspace_id, f"batch-{batch}")
                if pause:
                    await asyncio.sleep(pause)
                counts["rows"] += 10
                await run.save(conn, checkpoint={"next": batch + 1, "counts": counts}, done=batch + 1,
                               counts=counts)
            if after:
                await after(run, batch)
        return JobResult(counts={**counts, "done": True})

    return handle


async def test_worker_runs_a_started_job_to_success_with_progress_and_counts(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls))
    job_id = await start(app, api, upload="contacts.csv")
    queued = await job(api, job_id)
    assert (queued["kind"], queued["status"], queued["attempts"]) == ("IMPORT", "QUEUED", 0)
    assert queued["progress"] == {"done": 0, "total": None} and queued["startedAt"] is None

    await work(redis_url)

    done = await job(api, job_id)
    assert done["status"] == "SUCCEEDED" and done["error"] is None
    assert done["progress"] == {"done": BATCHES, "total": BATCHES}
    assert done["counts"] == {"rows": 30, "done": True}
    assert done["attempts"] == 1 and done["createdBy"] == "apikey:test"
    assert done["startedAt"] and done["finishedAt"] and done["resultFile"] is None and done["errorReport"] is None
    assert calls == [(1, None)]
    assert await group_names(api) == ["batch-0", "batch-1", "batch-2"]


async def test_a_job_enqueued_twice_runs_once(app: Any, api: Api, redis_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls))
    job_id = await start(app, api)
    pk = from_global_id(job_id)[1]
    assert await enqueue_attempt(app.state.redis, pk, 1) is False  # arq refuses the same attempt id
    await work(redis_url)
    assert await enqueue_attempt(app.state.redis, pk, 1) is False  # its result is kept
    assert await run_job({}, pk, 1) == "skipped"  # and a stray call finds the job finished

    assert calls == [(1, None)]
    assert (await job(api, job_id))["attempts"] == 1
    assert await group_names(api) == ["batch-0", "batch-1", "batch-2"]


async def test_cancelling_a_queued_job_means_its_handler_never_runs(app: Any, api: Api, redis_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls))
    job_id = await start(app, api)
    cancelled = await api.ok(CANCEL, id=job_id)
    assert cancelled["job"]["status"] == "CANCELLED" and cancelled["job"]["finishedAt"]

    await work(redis_url)

    assert calls == [] and await group_names(api) == []
    assert (await job(api, job_id))["status"] == "CANCELLED"
    again = (await api(CANCEL, id=job_id))["jobCancel"]
    assert again["userErrors"] == [{"field": ["id"], "code": "JOB_FINISHED",
                                    "message": "the job has already finished"}]
    assert again["job"]["status"] == "CANCELLED"


async def test_cancelling_a_running_job_stops_it_between_batches_keeping_committed_ones(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = ""

    async def cancel_after_first_batch(run: JobRun, batch: int) -> None:
        if batch == 0:  # the user clicks "cancel" while the job runs
            assert (await api.ok(CANCEL, id=job_id))["job"]["status"] == "CANCELLED"

    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls, after=cancel_after_first_batch))
    job_id = await start(app, api)
    await work(redis_url)

    stopped = await job(api, job_id)
    assert stopped["status"] == "CANCELLED" and stopped["finishedAt"] and stopped["error"] is None
    assert stopped["progress"] == {"done": 1, "total": BATCHES} and stopped["counts"] == {"rows": 10}
    assert await group_names(api) == ["batch-0"]


async def test_a_batch_in_flight_when_the_job_is_cancelled_is_rolled_back(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = ""

    async def cancel_during_second_batch(run: JobRun, batch: int) -> None:
        if batch == 1:  # passed check_cancelled: the cancel lands while the batch is being written
            await api.ok(CANCEL, id=job_id)

    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler([], before=cancel_during_second_batch))
    job_id = await start(app, api)
    await work(redis_url)

    stopped = await job(api, job_id)
    assert stopped["status"] == "CANCELLED" and stopped["progress"]["done"] == 1
    assert await group_names(api) == ["batch-0"]  # batch-1's group went with its checkpoint


@pytest.mark.parametrize(("error", "message"), [
    (DomainError("UPLOAD_NOT_FOUND", "the uploaded file is gone"), "the uploaded file is gone"),
    (ValueError("row 7 has no columns"), "ValueError: row 7 has no columns"),
])
async def test_a_failing_handler_fails_its_job_with_the_error(app: Any, api: Api, redis_url: str,
                                                              monkeypatch: pytest.MonkeyPatch, error: Exception,
                                                              message: str) -> None:
    async def fail_after_first_batch(run: JobRun, batch: int) -> None:
        if batch == 0:
            raise error

    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler([], after=fail_after_first_batch))
    job_id = await start(app, api)
    await work(redis_url)

    failed = await job(api, job_id)
    assert (failed["status"], failed["error"]) == ("FAILED", message)
    assert failed["progress"]["done"] == 1 and failed["counts"] == {"rows": 10} and failed["finishedAt"]
    assert await group_names(api) == ["batch-0"]
    assert (await api(CANCEL, id=job_id))["jobCancel"]["userErrors"][0]["code"] == "JOB_FINISHED"


async def test_a_kind_without_handler_fails_instead_of_hanging(app: Any, api: Api, redis_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(HANDLERS, JobKind.PUSH, raising=False)
    job_id = await start(app, api, JobKind.PUSH)
    await work(redis_url)
    failed = await job(api, job_id)
    assert (failed["status"], failed["error"]) == ("FAILED", "RuntimeError: no handler for PUSH jobs")


async def test_jobs_lists_newest_first_filters_by_kind_and_status_and_pages(app: Any, api: Api) -> None:
    kinds = [JobKind.IMPORT, JobKind.EXPORT, JobKind.IMPORT, JobKind.PUSH, JobKind.EXPORT]
    ids = [await start(app, api, kind) for kind in kinds]
    await api.ok(CANCEL, id=ids[1])
    await api.ok(CANCEL, id=ids[2])

    page = (await api(JOBS, first=2))["jobs"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[4], ids[3]]
    assert page["totalCount"] == 5 and page["pageInfo"]["hasNextPage"]
    page = (await api(JOBS, first=2, after=page["pageInfo"]["endCursor"]))["jobs"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[2], ids[1]]
    page = (await api(JOBS, first=2, after=page["pageInfo"]["endCursor"]))["jobs"]
    assert [e["node"]["id"] for e in page["edges"]] == [ids[0]] and not page["pageInfo"]["hasNextPage"]

    exports = (await api(JOBS, kinds=["EXPORT"]))["jobs"]
    assert [e["node"]["id"] for e in exports["edges"]] == [ids[4], ids[1]] and exports["totalCount"] == 2
    cancelled_imports = (await api(JOBS, kinds=["IMPORT"], statuses=["CANCELLED"]))["jobs"]
    assert [e["node"]["id"] for e in cancelled_imports["edges"]] == [ids[2]]
    waiting = (await api(JOBS, statuses=["QUEUED", "RUNNING"]))["jobs"]
    assert [e["node"]["id"] for e in waiting["edges"]] == [ids[4], ids[3], ids[0]]

    bad = await api.raw(JOBS, {"after": "not-a-cursor"})
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_jobs_are_private_to_their_workspace(app: Any, api: Api, client: httpx.AsyncClient) -> None:
    job_id = await start(app, api)
    stranger = await make_workspace(client, name="Other")
    assert (await stranger(JOB, id=job_id))["job"] is None
    assert (await stranger(JOBS))["jobs"]["totalCount"] == 0
    refused = (await stranger(CANCEL, id=job_id))["jobCancel"]
    assert refused["userErrors"][0]["code"] == "NOT_FOUND" and refused["job"] is None
    assert (await job(api, job_id))["status"] == "QUEUED"


async def test_reading_needs_jobs_read_and_cancelling_needs_the_kinds_write_permission(
        app: Any, api: Api) -> None:
    import_job, export_job = await start(app, api), await start(app, api, JobKind.EXPORT)
    analyst = await other_key(api, Role.ANALYST)
    assert (await job(analyst, import_job))["status"] == "QUEUED"
    denied = await analyst.raw(CANCEL, {"id": import_job})
    assert denied["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"

    exporter = await other_key(api, Role.ANALYST, ["users:export"])
    assert (await exporter.raw(CANCEL, {"id": import_job}))["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    assert (await exporter.ok(CANCEL, id=export_job))["job"]["status"] == "CANCELLED"

    partner = await other_key(api, Role.PARTNER)
    assert (await partner.raw(JOB, {"id": import_job}))["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    operator = await other_key(api, Role.OPERATOR)
    assert (await operator.ok(CANCEL, id=import_job))["job"]["status"] == "CANCELLED"


async def test_a_job_whose_worker_died_is_recovered_once_and_resumes_at_its_checkpoint(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def hang_after_first_batch(run: JobRun, batch: int) -> None:
        if run.attempt == 1 and batch == 0:
            await asyncio.sleep(30)  # the worker "dies" here: arq times the attempt out

    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls, after=hang_after_first_batch))
    job_id = await start(app, api)
    pk = from_global_id(job_id)[1]
    await work(redis_url, timeout=1)

    lost = await job(api, job_id)
    assert (lost["status"], lost["progress"]["done"], lost["attempts"]) == ("RUNNING", 1, 1)
    redis = app.state.redis
    assert await recover_stale_jobs(redis, stale_after_s=60) == []  # its heartbeat is recent
    await db.execute("UPDATE jobs SET heartbeat_at = now() - interval '10 minutes' WHERE id = $1", pk)
    first, second = await asyncio.gather(recover_stale_jobs(redis, 60), recover_stale_jobs(redis, 60))
    assert sorted(first + second) == [pk]  # two recoverers at once: one wins
    requeued = await job(api, job_id)
    assert (requeued["status"], requeued["attempts"]) == ("QUEUED", 2)
    assert await recover_stale_jobs(redis, stale_after_s=0) == []  # its new attempt is waiting in the queue

    await work(redis_url)

    assert calls == [(1, None), (2, {"next": 1, "counts": {"rows": 10}})]
    resumed = await job(api, job_id)
    assert (resumed["status"], resumed["attempts"]) == ("SUCCEEDED", 2)
    assert resumed["progress"]["done"] == BATCHES and resumed["counts"] == {"rows": 30, "done": True}
    assert await group_names(api) == ["batch-0", "batch-1", "batch-2"]  # nothing written twice


async def test_an_old_attempt_that_wakes_up_after_recovery_writes_nothing(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def presumed_dead(run: JobRun, batch: int) -> None:
        if run.attempt == 1 and batch == 1:  # stalled so long that the job was given to a new attempt
            await db.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", run.id)
            assert await recover_stale_jobs(app.state.redis, 60) == [run.id]

    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls, before=presumed_dead))
    job_id = await start(app, api)
    await work(redis_url)

    assert calls == [(1, None), (2, {"next": 1, "counts": {"rows": 10}})]
    done = await job(api, job_id)
    assert (done["status"], done["attempts"], done["counts"]) == ("SUCCEEDED", 2, {"rows": 30, "done": True})
    assert await group_names(api) == ["batch-0", "batch-1", "batch-2"]


async def test_a_long_batch_keeps_its_heartbeat_and_is_not_taken_for_dead(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "HEARTBEAT_S", 0.05)
    recovered: list[list[int]] = []

    async def look_for_dead_jobs(run: JobRun, batch: int) -> None:
        if batch == 0:
            await asyncio.sleep(0.6)
            recovered.append(await recover_stale_jobs(app.state.redis, stale_after_s=0.3))

    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls, after=look_for_dead_jobs, pause=0.4))
    job_id = await start(app, api)
    await work(redis_url)

    assert recovered == [[]] and calls == [(1, None)]
    assert (await job(api, job_id))["status"] == "SUCCEEDED"


async def test_a_queued_job_whose_enqueue_was_lost_is_queued_again(app: Any, api: Api, redis_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls))
    job_id = await start(app, api)
    pk = from_global_id(job_id)[1]
    await app.state.redis.flushdb()  # Redis lost its queue
    assert await recover_stale_jobs(app.state.redis, 60) == []  # not waiting for long yet
    await db.execute("UPDATE jobs SET created_at = now() - interval '10 minutes' WHERE id = $1", pk)
    assert await runner.recover_stale_jobs_cron({"redis": app.state.redis}) == [pk]  # the worker's cron
    await work(redis_url)
    assert calls == [(1, None)] and (await job(api, job_id))["status"] == "SUCCEEDED"


async def test_a_job_started_in_an_uncommitted_transaction_runs_once_committed(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "MISSING_ROW_DEFER_S", 0.3)
    calls: list[tuple[int, Any]] = []
    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler(calls))
    outside = contextvars.copy_context()  # the worker is another process: it does not see the transaction
    async with db.transaction() as conn:
        pk = await start_job(api.workspace_id, JobKind.IMPORT, {}, created_by="apikey:test",
                             redis=app.state.redis, conn=conn)
        worker = asyncio.create_task(work(redis_url), context=outside)
        await asyncio.sleep(0.15)  # the attempt runs before the commit and finds no row yet
    finished = await asyncio.wait_for(worker, 10)

    assert finished.jobs_retried >= 1 and calls == [(1, None)]
    assert (await job(api, to_global_id("Job", pk)))["status"] == "SUCCEEDED"


class AsgiWebSocket:
    """A graphql-transport-ws client talking ASGI straight to the app."""

    def __init__(self, app: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {"type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
                 "path": "/graphql", "raw_path": b"/graphql", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"roster"), (b"sec-websocket-protocol", b"graphql-transport-ws"),
                             *(headers or [])],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "subprotocols": ["graphql-transport-ws"]}
        self.task = asyncio.create_task(app(scope, self.outgoing.get, self.incoming.put))
        self.close_code: int | None = None

    async def __aenter__(self) -> AsgiWebSocket:
        await self.outgoing.put({"type": "websocket.connect"})
        accepted = await asyncio.wait_for(self.incoming.get(), 10)
        assert accepted["type"] == "websocket.accept" and accepted["subprotocol"] == "graphql-transport-ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.outgoing.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 10)

    async def send(self, message: dict[str, Any]) -> None:
        await self.outgoing.put({"type": "websocket.receive", "text": json.dumps(message)})

    async def receive(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.incoming.get(), 10)
        if message["type"] == "websocket.close":
            self.close_code = message["code"]
            return {"type": "closed", "code": message["code"]}
        assert "text" in message, message
        return json.loads(message["text"])


async def follow(ws: Any, job_id: str, payload: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """connection_init, subscribe to jobProgress, collect `next` payloads until `complete`."""
    await ws.send({"type": "connection_init", "payload": payload or {}})
    assert (await ws.receive())["type"] == "connection_ack"
    await ws.send({"id": "1", "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": job_id}}})
    received = []
    while (message := await ws.receive())["type"] != "complete":
        assert message["type"] == "next", message
        received.append(message["payload"])
    return received


def statuses_and_progress(payloads: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(p["data"]["jobProgress"]["status"], p["data"]["jobProgress"]["progress"]["done"]) for p in payloads]


async def test_job_progress_streams_over_a_websocket_until_the_job_ends(
        app: Any, api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_resolvers, "POLL_S", 0.02)
    ready = asyncio.Event()

    async def pace(run: JobRun, batch: int) -> None:
        await asyncio.sleep(0.2)  # long enough for the subscriber to see each batch

    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler([], after=pace))
    job_id = await start(app, api)

    async def subscribe() -> list[dict[str, Any]]:
        async with AsgiWebSocket(app) as ws:
            ready.set()
            return await follow(ws, job_id, {"Authorization": f"Bearer {api.token}"})

    subscription = asyncio.create_task(subscribe())
    await ready.wait()
    await asyncio.sleep(0.2)
    await work(redis_url)
    seen = statuses_and_progress(await asyncio.wait_for(subscription, 10))

    assert seen[0] == ("QUEUED", 0) and seen[-1] == ("SUCCEEDED", BATCHES)
    assert ("RUNNING", 1) in seen and ("RUNNING", 2) in seen
    assert [done for _, done in seen] == sorted(done for _, done in seen)
    assert len(seen) == len(set(seen))  # only changes are sent


async def test_job_progress_of_a_finished_job_sends_it_once_and_completes(app: Any, api: Api) -> None:
    job_id = await start(app, api)
    await api.ok(CANCEL, id=job_id)
    # The key may also come in the handshake's headers instead of connection_init.
    async with AsgiWebSocket(app, [(b"authorization", f"Bearer {api.token}".encode())]) as ws:
        assert statuses_and_progress(await follow(ws, job_id)) == [("CANCELLED", 0)]


async def test_job_progress_needs_a_key_of_the_jobs_workspace(app: Any, api: Api,
                                                              client: httpx.AsyncClient) -> None:
    job_id = await start(app, api)
    async with AsgiWebSocket(app) as ws:
        await ws.send({"type": "connection_init", "payload": {}})
        assert await ws.receive() == {"type": "closed", "code": 4403}
    async with AsgiWebSocket(app) as ws:
        await ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {api.token}x"}})
        assert await ws.receive() == {"type": "closed", "code": 4403}

    stranger = await make_workspace(client, name="Other")
    async with AsgiWebSocket(app) as ws:
        await ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {stranger.token}"}})
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.send({"id": "1", "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": job_id}}})
        refused = await ws.receive()
        assert refused["payload"] == {"data": None, "errors": [
            {"message": "job not found", "extensions": {"code": "NOT_FOUND", "field": ["id"]}}]}
        assert await ws.receive() == {"id": "1", "type": "complete"}


class RealWebSocket:
    """The same client interface over a real socket (the `websockets` package)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.connection.recv(), 10))


async def test_job_progress_streams_over_a_real_websocket_under_uvicorn(
        app: Any, api: Api, redis_url: str, served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from websockets.asyncio import client

    async def pace(run: JobRun, batch: int) -> None:
        await asyncio.sleep(0.5)  # the served app polls every 0.3 s

    monkeypatch.setitem(HANDLERS, JobKind.IMPORT, batch_handler([], after=pace))
    job_id = await start(app, api)
    url = f"ws://{served.removeprefix('http://')}/graphql"
    async with client.connect(url, subprotocols=["graphql-transport-ws"]) as connection:
        subscription = asyncio.create_task(follow(RealWebSocket(connection), job_id,
                                                  {"Authorization": f"Bearer {api.token}"}))
        await asyncio.sleep(0.5)
        await work(redis_url)
        seen = statuses_and_progress(await asyncio.wait_for(subscription, 15))

    assert seen[0] == ("QUEUED", 0) and seen[-1] == ("SUCCEEDED", BATCHES)
    assert ("RUNNING", 1) in seen and ("RUNNING", 2) in seen


async def test_a_jobs_files_are_only_for_the_key_that_started_it_and_admins(api: Api, redis_url: str) -> None:
    """jobs:read shows every job's progress, but an export's file holds the columns of the key that asked."""
    from tests.test_exports import JOB, export, people

    await people(api)
    operator = await other_key(api, Role.OPERATOR)
    job, rows = await export(operator, redis_url, columns={"fields": ["id"], "identities": ["PHONE"]})
    assert any(cell.startswith("+86") for row in rows for cell in row)
    assert (await operator(JOB, id=job["id"]))["job"]["resultFile"] is not None
    assert (await api(JOB, id=job["id"]))["job"]["resultFile"] is not None  # ADMIN
    analyst = await other_key(api, Role.ANALYST)
    seen = (await analyst(JOB, id=job["id"]))["job"]
    assert seen["status"] == "SUCCEEDED" and seen["resultFile"] is None
    other_operator = await other_key(api, Role.OPERATOR)
    assert (await other_operator(JOB, id=job["id"]))["job"]["resultFile"] is None
