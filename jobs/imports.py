"""The IMPORT job: stream a CSV/XLSX, parse rows under the mapping, ID-map each batch, write it set-based.

Each batch commits in one transaction together with the job's checkpoint, so a retried job (after a
worker died) resumes at the first uncommitted row: nothing is lost or written twice.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import csv
import gc
import io
import itertools
import logging
import multiprocessing
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from jobs.import_plan import (
    COPY_COLUMNS,
    BatchContext,
    Overlay,
    Planned,
    mapped_fields,
    new_rows_csv,
    plan,
    plan_ahead,
    user_columns,
)
from models import db, resolution
from models.errors import DomainError
from models.id_mapping import Person
from models.import_rows import ColumnRule, Key, ParsedRow, RowError, RowSpec, parse_row
from models.orphans import release_stray_identities
from models.tag_values import lock_tags
from models.users import existing_group_ids
from settings import get_settings

logger = logging.getLogger(__name__)
COUNT_KEYS = ("rows", "created", "updated", "merged", "skipped", "failed")


@dataclass
class ImportParams:
    """What importStart stored in the job's params."""

    upload_file_id: int
    rules: list[ColumnRule]
    default_region: str
    overwrite: bool
    group_ids: list[int]
    source: str
    batch_size: int = 5000

    @classmethod
    def from_json(cls, params: dict[str, Any]) -> ImportParams:
        return cls(upload_file_id=params["upload_file_id"], rules=[ColumnRule(**r) for r in params["rules"]],
                   default_region=params["default_region"], overwrite=params["duplicate_policy"] == "OVERWRITE",
                   group_ids=params.get("group_ids", []), source=params["source"],
                   batch_size=params.get("batch_size") or get_settings().import_batch_size)


@dataclass
class BatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    # False when the batch wrote other than planned (planned again, people dropped, keys taken meanwhile):
    # then a plan of the next batch made against it (its Overlay) must be made again.
    as_planned: bool = True


def batches(rows: Iterator[list[str]], start: int, size: int) -> Iterator[tuple[int, list[list[str]]]]:
    index = start
    while chunk := list(islice(rows, size)):
        yield index, chunk
        index += len(chunk)


def batch_context(workspace_id: int, params: ImportParams) -> BatchContext:
    return BatchContext(workspace_id, params.overwrite, params.group_ids, params.source, mapped_fields(params.rules))


async def write_batch(workspace_id: int, rows: list[ParsedRow], params: ImportParams, conn: Any,
                      actor: str) -> BatchResult:
    """Plan and write one batch of parsed rows in the caller's transaction."""
    planned = await plan(batch_context(workspace_id, params), rows, conn)
    return await write_planned(workspace_id, planned, params, conn, actor)


async def write_planned(workspace_id: int, planned: Planned, params: ImportParams, conn: Any,
                        actor: str) -> BatchResult:
    """Write a planned batch (inside the caller's transaction), planning it again here if it went stale.

    New people (most of an import) are COPYed straight into users and their child tables: nothing can
    exist yet for users created in this transaction. Existing people go through conflict-aware upserts.
    """
    ctx = batch_context(workspace_id, params)
    await _lock_parents(workspace_id, params, conn)
    result = BatchResult()
    for _ in range(_MAX_PLANS):
        if await _lock_owners(workspace_id, planned, conn):
            break
        planned = await plan(ctx, planned.rows, conn)  # in this transaction: sees all that is committed
        result.as_planned = False
    else:
        raise RuntimeError(f"the users matched by an import batch kept changing ({_MAX_PLANS} plans)")
    result.errors += planned.errors
    if planned.skipped:
        result.counts["skipped"] += planned.skipped
    for person in planned.old:
        if len(person.existing) > 1:
            survivor = await resolution.merge(workspace_id, person.existing, conn, actor=actor)
            result.counts["merged"] += len(person.existing) - 1
            person.existing = [survivor]
    kept = {id(p) for p in await _check_usernames(workspace_id, [*planned.new, *planned.old], conn, result)}
    new = [p for p in planned.new if id(p) in kept]
    old = [p for p in planned.old if id(p) in kept]
    if len(kept) < len(planned.new) + len(planned.old):
        result.as_planned = False
    groups_by_name = await _group_ids_by_name(workspace_id, new, old, conn)
    payloads = planned.new_rows
    if len(new) < len(planned.new) or any(groups_by_name[n] != i for n, i in planned.groups_by_name.items()) \
            or not payloads and new:
        payloads = new_rows_csv(ctx, new, groups_by_name)
    if new:
        await conn.copy_to_table("users", source=_sent(payloads["users"]), columns=user_columns(ctx),
                                 format="csv")
        if not await _copy_new_identities(payloads["identities"], conn):
            result.as_planned = False
        for table in ("group_members", "user_tags"):
            if payloads[table]:
                await conn.copy_to_table(table, source=_sent(payloads[table]), columns=COPY_COLUMNS[table],
                                         format="csv")
    if old:
        await _update_profiles(workspace_id, old, params, conn)
        if not await _add_identities(workspace_id, old, planned.owners, params.source, conn):
            result.as_planned = False
        await _add_memberships(workspace_id, old, params.group_ids, groups_by_name, conn)
        await _set_tags(workspace_id, old, conn)
    result.counts["created"] += len(new)
    result.counts["updated"] += len(old)
    return result


async def _lock_parents(workspace_id: int, params: ImportParams, conn: Any) -> None:
    """The import's groups and tags, checked and key-share locked in this batch's transaction: memberships
    and tag values have no foreign keys, so a group or tag deleted mid-import fails the job here (with what
    earlier batches committed kept, as after a cancel) instead of leaving rows that belong to nothing."""
    if params.group_ids:
        await existing_group_ids(workspace_id, params.group_ids, conn, "groupIds")
    tag_ids = [r.tag["id"] for r in params.rules if r.target == "TAG" and r.tag]
    if tag_ids:
        await lock_tags(workspace_id, tag_ids, conn, ["mapping"])


_GROWN_TABLES = "users, identities, group_members, user_tags"
_ANALYZE_AFTER = 1000  # new users since the last ANALYZE, at least (and at least as many as there were)


@dataclass
class _Statistics:
    """Keeps the planner's statistics current while an import grows the tables. Autovacuum analyzes a
    minute or more late: meanwhile, planned on a table it believes tiny, the owners lookup took the
    (workspace_id, user_id) index for its key probe and scanned the workspace's identities for every key
    (an import of 12k rows took 19 s instead of 2). ANALYZE whenever the users have doubled, so a few
    times per import."""

    users_at_last: float = 0.0
    added: int = 0
    running: asyncio.Task[Any] | None = None  # in the background, on a pool connection, beside the writes

    def grown(self, created: int) -> None:
        self.added += created
        if self.added >= max(_ANALYZE_AFTER, self.users_at_last) and (self.running is None or self.running.done()):
            self.users_at_last += self.added
            self.added = 0
            self.running = asyncio.ensure_future(db.execute(f"ANALYZE {_GROWN_TABLES}"))

    async def close(self) -> None:
        """Wait for an ANALYZE under way; one that failed (say, a role that does not own the tables)
        only costs the plans their accuracy, not the import."""
        if self.running is not None:
            try:
                await self.running
            except Exception:
                logger.warning("ANALYZE during an import failed", exc_info=True)


_MAX_PLANS = 5  # plans of one batch in its transaction before the job fails (and is retried)


async def _lock_owners(workspace_id: int, planned: Planned, conn: Any) -> bool:
    """Key-share lock the users the plan matched (IGNORE's skipped ones too); False if one is gone.
    Identities have no foreign key (models.orphans): a user deleted or merged away since the plan took
    its identities with it, so the batch must be planned again (a merge also moves them elsewhere)."""
    users = set(planned.owners.values())
    return not users or await conn.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM users WHERE workspace_id = $1 AND id = ANY($2::bigint[])"
        " FOR KEY SHARE) locked", workspace_id, list(users)) == len(users)


async def _check_usernames(workspace_id: int, people: list[Person], conn: Any, result: BatchResult) -> list[Person]:
    """A username already held by someone else fails the rows; an existing user's username never changes."""
    wanted = [p.profile["username"] for p in people if p.profile.get("username")]
    if not wanted:
        return people
    holders = {r["username"]: r["id"] for r in await conn.fetch(
        "SELECT username, id FROM users WHERE workspace_id = $1 AND username = ANY($2::text[])", workspace_id, wanted)}
    kept, claimed = [], set()
    for person in people:
        name = person.profile.get("username")
        if name:
            holder = holders.get(name)
            mine = holder is not None and holder in person.existing
            if (holder is not None and not mine) or name in claimed:
                result.errors += [RowError(r.index, "USERNAME_TAKEN", f"username '{name}' belongs to another user")
                                  for r in person.rows]
                continue
            claimed.add(name)
        kept.append(person)
    return kept


async def _update_profiles(workspace_id: int, people: list[Person], params: ImportParams, conn: Any) -> None:
    """OVERWRITE: mapped, non-empty cells replace values, except fields locked by a hand edit.
    The rows travel as one JSON array that PostgreSQL types by the users columns (no temporary table:
    creating one per batch cost more than the update itself)."""
    fields = sorted({f for p in people for f in p.profile if f != "username"})
    rows = [{"id": p.existing[0], "username": p.profile.get("username"), **{f: p.profile.get(f) for f in fields}}
            for p in people]
    sets = [f"{f} = CASE WHEN s.{f} IS NULL OR u.locked_fields::jsonb ? '{f}' THEN u.{f} ELSE s.{f} END"
            for f in fields]
    await conn.execute(
        f"UPDATE users u SET {', '.join([*sets, 'username = COALESCE(u.username, s.username)'])}, updated_at = now()"
        " FROM jsonb_populate_recordset(NULL::users, $2::jsonb) s WHERE u.workspace_id = $1 AND u.id = s.id"
        # The ids again, as a list the planner can count: mid-import the users statistics are stale, and a
        # join on s.id alone became a hash join over the whole workspace (40 ms a batch at 200k users).
        "   AND u.id = ANY($3::bigint[])",
        workspace_id, orjson.dumps(rows).decode(), [r["id"] for r in rows])


async def _sent(payload: bytes) -> AsyncIterator[bytes]:
    """A COPY source. Not a BytesIO: asyncpg reads those through the default thread pool, with a class it
    defines per call whose reference cycle kept every batch's payload alive until a full GC."""
    yield payload


async def _copy_new_identities(payload: bytes, conn: Any) -> bool:
    """The new people's keys, nobody's when planned. COPY, unless a concurrent writer took one of them
    meanwhile: then the savepoint undoes it and a conflict-tolerant INSERT skips the taken ones."""
    columns = COPY_COLUMNS["identities"]
    await conn.execute("SAVEPOINT import_identities")
    try:
        await conn.copy_to_table("identities", source=_sent(payload), columns=columns, format="csv")
    except asyncpg.UniqueViolationError:
        await conn.execute("ROLLBACK TO SAVEPOINT import_identities")
        await conn.execute("CREATE TEMP TABLE import_identities (LIKE identities INCLUDING DEFAULTS) ON COMMIT DROP")
        await conn.copy_to_table("import_identities", source=_sent(payload), columns=columns, format="csv")
        await release_stray_identities(conn, "import_identities")
        await conn.execute(f"INSERT INTO identities ({', '.join(columns)}) SELECT {', '.join(columns)}"
                           " FROM import_identities ON CONFLICT (workspace_id, type, channel, value) DO NOTHING")
        await conn.execute("RELEASE SAVEPOINT import_identities")
        return False
    await conn.execute("RELEASE SAVEPOINT import_identities")
    return True


async def _add_identities(workspace_id: int, people: list[Person], owners: dict[Key, int], source: str,
                          conn: Any) -> bool:
    """Existing people's keys that nobody owned when planned (taken meanwhile: skipped, and False)."""
    keys = [(p.existing[0], *k) for p in people for k in p.identities if k not in owners]
    if keys:
        status = await conn.execute(
            f"INSERT INTO identities ({', '.join(COPY_COLUMNS['identities'])})"
            " SELECT $1, u, t, c, v, e, $7 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])"
            "   AS k(u, t, c, v, e)"
            " ON CONFLICT (workspace_id, type, channel, value) DO NOTHING",
            workspace_id, *(list(column) for column in zip(*keys)), source)
        return status == f"INSERT 0 {len(keys)}"
    return True


async def _group_ids_by_name(workspace_id: int, new: list[Person], old: list[Person], conn: Any) -> dict[str, int]:
    """A GROUP column names groups; missing ones are created by the import. All are key-share locked."""
    names = sorted({g for people in (new, old) for p in people for g in p.groups})
    if not names:
        return {}
    await conn.execute(
        "INSERT INTO groups (workspace_id, name, source, labels) SELECT $1, n, 'IMPORT', '[]'::jsonb"
        " FROM unnest($2::text[]) n ON CONFLICT (workspace_id, name) DO NOTHING", workspace_id, names)
    return {r["name"]: r["id"] for r in await conn.fetch(
        "SELECT id, name FROM groups WHERE workspace_id = $1 AND name = ANY($2::text[]) FOR KEY SHARE",
        workspace_id, names)}


async def _add_memberships(workspace_id: int, people: list[Person], group_ids: list[int],
                           by_name: dict[str, int], conn: Any) -> None:
    fixed = list(dict.fromkeys(group_ids))
    added = [(group_id, p.existing[0]) for p in people
             for group_id in ({*fixed, *(by_name[n] for n in p.groups)} if p.groups else fixed)]
    if added:
        await conn.execute(
            "INSERT INTO group_members (workspace_id, group_id, user_id, source)"
            " SELECT $1, g, u, 'IMPORT' FROM unnest($2::bigint[], $3::bigint[]) AS x(g, u)"
            " ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING",
            workspace_id, [g for g, _ in added], [u for _, u in added])


async def _set_tags(workspace_id: int, people: list[Person], conn: Any) -> None:
    """Imported tag values replace existing people's earlier ones unless they were locked (KEEP_MANUAL)."""
    if rows := [(p.existing[0], tag_id, values) for p in people for tag_id, values in p.tags.items()]:
        await conn.execute(
            "INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked, updated_at)"
            " SELECT $1, (x->>0)::bigint, (x->>1)::bigint, ARRAY(SELECT jsonb_array_elements_text(x->2)), 'IMPORT',"
            "   false, now() FROM jsonb_array_elements($2::jsonb) x"
            " ON CONFLICT (workspace_id, user_id, tag_id) DO UPDATE SET \"values\" = EXCLUDED.\"values\","
            " source = 'IMPORT', updated_at = now() WHERE NOT user_tags.locked", workspace_id, orjson.dumps(rows).decode())


PARSE_AHEAD = 3  # batches parsed ahead of the writer (bounded: memory stays constant)
PLAN_AHEAD = True  # plan the next batch while writing this one (off: one after the other, for comparison)


def parse_batch(start: int, cells: list[list[str]], spec: RowSpec) -> tuple[list[ParsedRow], list[RowError]]:
    """Parse one batch (runs in a worker process)."""
    parsed, errors = [], []
    for offset, row in enumerate(cells):
        result = parse_row(start + offset, row, spec)
        (errors if isinstance(result, RowError) else parsed).append(result)
    return parsed, errors


@contextlib.contextmanager
def _parse_pool() -> Iterator[concurrent.futures.Executor]:
    workers = get_settings().import_parse_workers
    if workers <= 0:  # parse in a thread of this process (small machines, tests)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            yield pool
        return
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


_SWITCH_INTERVAL_S = 0.0005  # GIL hand-over while importing (default 5 ms), see _lean_runtime
_GC_YOUNG_THRESHOLD = 100_000  # container allocations between young collections while importing (default 700)
_lean_users = 0
_saved_runtime: tuple[tuple[int, int, int], bool, float] = (gc.get_threshold(), False, sys.getswitchinterval())


@contextlib.contextmanager
def _lean_runtime() -> Iterator[None]:
    """Less cyclic GC while importing: a batch is ~100k small dicts, lists and tuples without cycles, and
    collections kept rescanning them and the worker's whole heap (~40% of the import's Python time).
    What exists is frozen (never rescanned) and young collections come rarely. And a shorter GIL switch
    interval: planning runs in a thread, and the batch being written must not wait 5 ms for the GIL each
    time the database answers it. All undone at the end."""
    global _lean_users, _saved_runtime
    if _lean_users == 0:  # imports running side by side in one worker share the setting
        froze = gc.get_freeze_count() == 0  # a heap someone else froze (the API's) stays frozen after us
        if froze:
            gc.freeze()
        _saved_runtime = (gc.get_threshold(), froze, sys.getswitchinterval())
        gc.set_threshold(_GC_YOUNG_THRESHOLD, *_saved_runtime[0][1:])
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
    _lean_users += 1
    try:
        yield
    finally:
        _lean_users -= 1
        if _lean_users == 0:
            threshold, froze, switch_interval = _saved_runtime
            gc.set_threshold(*threshold)
            sys.setswitchinterval(switch_interval)
            if froze:
                gc.unfreeze()


def error_lines(errors: list[RowError], batch_start: int, cells: list[list[str]]) -> str:
    """CSV lines of the error report for a batch: the original row, its row number and the reason."""
    out = io.StringIO()
    writer = csv.writer(out)
    for error in sorted(errors, key=lambda e: e.index):
        writer.writerow([*cells[error.index - batch_start], error.index + 2, error.code, error.message])
    return out.getvalue()


def error_part(parts_dir: Path, start: int) -> Path:
    return parts_dir / f"{start:012d}.csv"


def assemble_report(parts_dir: Path, columns: list[str], target: Path) -> None:
    """Concatenate the committed batches' error parts into one CSV (with BOM for Excel)."""
    with target.open("w", encoding="utf-8-sig", newline="") as out:
        csv.writer(out).writerow([*columns, "row", "error_code", "error"])
        for part in sorted(parts_dir.glob("*.csv")):
            out.write(part.read_text(encoding="utf-8"))



async def run_import(run: Any) -> Any:
    """The IMPORT handler (jobs.runner.JobRun -> JobResult); resumes at run.checkpoint."""
    from jobs.readers import open_table
    from jobs.runner import JobResult
    from models.files import create_file, path_of

    params = ImportParams.from_json(run.params)
    upload = await db.fetchrow("SELECT * FROM files WHERE workspace_id = $1 AND id = $2",
                               run.workspace_id, params.upload_file_id)
    if upload is None:
        raise DomainError("UPLOAD_NOT_FOUND", "the uploaded file is gone")
    source_path = path_of(upload)
    table = open_table(source_path, upload["name"])
    spec = RowSpec(params.rules, params.default_region, params.source)
    checkpoint = run.checkpoint or {}
    start = checkpoint.get("next_row", 0)
    # Pinned by the first attempt: error-report parts are named by batch, so boundaries must not move.
    batch_size = checkpoint.get("batch_size") or params.batch_size
    counts: Counter[str] = Counter({k: 0 for k in COUNT_KEYS})
    counts.update(checkpoint.get("counts", {}))
    parts_dir = source_path.parent / f"import-{run.id}-errors"
    parts_dir.mkdir(parents=True, exist_ok=True)
    if start == 0:
        for part in parts_dir.glob("*.csv"):
            part.unlink()
    if not checkpoint:  # a resumed attempt keeps the total the first one counted
        await run.set_total(sum(1 for _ in table.rows()))

    # Three stages overlap: worker processes (or a thread) parse batches ahead; the next batch is planned
    # (owners looked up, people and ids decided, COPY rows built) while this one is written and committed.
    loop = asyncio.get_running_loop()
    ctx = batch_context(run.workspace_id, params)
    with _lean_runtime(), _parse_pool() as pool:
        parsing: collections.deque[tuple[int, list[list[str]], asyncio.Future[Any]]] = collections.deque()
        source = batches(table.rows(start), start, batch_size)

        def parse_ahead(n: int) -> None:
            for next_start, next_cells in itertools.islice(source, n):
                parsing.append((next_start, next_cells,
                                loop.run_in_executor(pool, parse_batch, next_start, next_cells, spec)))

        async def plan_next(planner: Any, overlay: Overlay | None, again: Any = None) -> Any:
            """(start, cells, parse errors, parsed rows, plan, overlay for the next) of the next batch, or
            of `again`'s batch planned anew."""
            if again is None:
                batch_start, cells, parsed_future = parsing.popleft()
                parse_ahead(1)
                parsed, errors = await parsed_future
            else:
                batch_start, cells, errors, parsed, *_ = again
            planned, next_overlay = await plan_ahead(ctx, parsed, planner, overlay)
            return batch_start, cells, errors, parsed, planned, next_overlay

        parse_ahead(PARSE_AHEAD)
        async with db.dedicated_connection() as planner:
            statistics = _Statistics(max(await planner.fetchval(
                "SELECT reltuples FROM pg_class WHERE oid = 'users'::regclass"), 0))
            planning = asyncio.ensure_future(plan_next(planner, None)) if parsing else None
            try:
                while planning is not None:
                    batch_start, cells, errors, _, planned, overlay = await planning
                    planning = None
                    if parsing and (PLAN_AHEAD and overlay is not None):  # else planned once this one commits
                        planning = asyncio.ensure_future(plan_next(planner, overlay))
                    await run.check_cancelled()
                    async with db.transaction() as conn:
                        written = await write_planned(run.workspace_id, planned, params, conn, actor=f"job:{run.id}")
                        errors += written.errors
                        counts.update(written.counts)
                        counts["failed"] += len(errors)
                        counts["rows"] += len(cells)
                        # Written before the commit and named by the batch: a retried batch overwrites its part.
                        part = error_part(parts_dir, batch_start)
                        if errors:
                            part.write_text(error_lines(errors, batch_start, cells),
                                            encoding="utf-8")
                        else:
                            part.unlink(missing_ok=True)
                        end = batch_start + len(cells)
                        await run.save(conn, checkpoint={"next_row": end, "batch_size": batch_size,
                                                         "counts": dict(counts)}, done=end, counts=dict(counts))
                    statistics.grown(written.counts["created"])
                    if planning is not None and not written.as_planned:  # its overlay was wrong: plan again
                        planning = asyncio.ensure_future(plan_next(planner, None, again=await planning))
                    if planning is None and parsing:
                        planning = asyncio.ensure_future(plan_next(planner, None))
            finally:
                if planning is not None:
                    planning.cancel()
                    with contextlib.suppress(BaseException):
                        await planning
                await statistics.close()

    report_id = None
    if counts["failed"]:
        report = parts_dir.with_suffix(".csv")
        assemble_report(parts_dir, table.columns, report)
        report_id = (await create_file(run.workspace_id, "ERROR_REPORT", f"{Path(upload['name']).stem}-errors.csv",
                                       report))["id"]
    return JobResult(counts=dict(counts), error_file_id=report_id)


def _register() -> None:
    from jobs.runner import HANDLERS
    from models.enums import JobKind

    HANDLERS[JobKind.IMPORT] = run_import


_register()
