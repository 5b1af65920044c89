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
import multiprocessing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import asyncpg

from models import db, resolution
from models.errors import DomainError
from models.id_mapping import Person, plan_batch
from models.import_rows import NAME_TARGETS, ColumnRule, Key, ParsedRow, RowError, RowSpec, parse_row
from models.profile import PROFILE_FIELDS
from models.tag_values import lock_tags
from models.users import existing_group_ids
from settings import get_settings

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


def batches(rows: Iterator[list[str]], start: int, size: int) -> Iterator[tuple[int, list[list[str]]]]:
    index = start
    while chunk := list(islice(rows, size)):
        yield index, chunk
        index += len(chunk)


async def write_batch(workspace_id: int, rows: list[ParsedRow], params: ImportParams, conn: Any,
                      actor: str) -> BatchResult:
    """ID-map and write one batch of parsed rows (inside the caller's transaction).

    New people (most of an import) are COPYed straight into users and their child tables: nothing can
    exist yet for users created in this transaction. Existing people go through conflict-aware upserts.
    """
    result = BatchResult()
    await _lock_parents(workspace_id, params, conn)
    owners = await _locked_owners(workspace_id, list(dict.fromkeys(k for r in rows for k in r.identities)), conn)
    counts = await _identity_counts(workspace_id, set(owners.values()), conn)
    plan = plan_batch(rows, owners, counts)
    result.errors += plan.errors
    people = plan.people
    if not params.overwrite:  # IGNORE: a contact that already exists stays exactly as it was
        result.counts["skipped"] += sum(len(p.rows) for p in people if p.existing)
        people = [p for p in people if not p.existing]
    for person in people:
        if len(person.existing) > 1:
            survivor = await resolution.merge(workspace_id, person.existing, conn, actor=actor)
            result.counts["merged"] += len(person.existing) - 1
            person.existing = [survivor]
    people = await _check_usernames(workspace_id, people, conn, result)

    new = [p for p in people if not p.existing]
    old = [p for p in people if p.existing]
    if new:
        await _insert_users(workspace_id, new, params, conn)
    if old:
        await _update_profiles(workspace_id, old, params, conn)
    await _add_identities(workspace_id, people, owners, params.source, conn)
    await _add_groups(workspace_id, new, old, params.group_ids, conn)
    await _set_tags(workspace_id, new, old, conn)
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


async def _owners(workspace_id: int, keys: list[Key], conn: Any) -> dict[Key, int]:
    """Current owner of each known key (as resolution.owners, for the import's tuple keys).

    One index probe per key (LATERAL ... LIMIT 1 keeps it a nested loop): a plain join of 10k keys turns
    into a hash join over the whole identities table once it is analyzed, slower with every batch."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT k.n, i.user_id"
        " FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(type, channel, value, n)"
        " CROSS JOIN LATERAL (SELECT user_id FROM identities i WHERE i.workspace_id = $1 AND i.type = k.type"
        "   AND i.channel = k.channel AND i.value = k.value LIMIT 1) i",
        workspace_id, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
    return {keys[n - 1]: user_id for n, user_id in rows}


async def _locked_owners(workspace_id: int, keys: list[Key], conn: Any) -> dict[Key, int]:
    """`_owners`, with the owners key-share locked: identities have no foreign key (models.orphans), so a
    user deleted (or merged away) between the lookup and the lock takes its identities with it; look again."""
    while True:
        owners = await _owners(workspace_id, keys, conn)
        users = set(owners.values())
        if not users or await conn.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM users WHERE workspace_id = $1 AND id = ANY($2::bigint[])"
                " FOR KEY SHARE) locked", workspace_id, list(users)) == len(users):
            return owners


def _mapped_fields(params: ImportParams) -> list[str]:
    mapped = {NAME_TARGETS[r.target] for r in params.rules if r.target in NAME_TARGETS} | \
        {r.field for r in params.rules if r.target == "PROFILE" and r.field}
    return [f for f in PROFILE_FIELDS if f in mapped]


async def _identity_counts(workspace_id: int, user_ids: set[int], conn: Any) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {}
    if user_ids:
        for r in await conn.fetch(
                "SELECT user_id, type, count(*) AS n FROM identities WHERE workspace_id = $1"
                " AND user_id = ANY($2::bigint[]) GROUP BY user_id, type", workspace_id, list(user_ids)):
            counts.setdefault(r["user_id"], Counter())[r["type"]] = r["n"]
    return counts


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


async def _insert_users(workspace_id: int, people: list[Person], params: ImportParams, conn: Any) -> None:
    """New users get their ids first, so that their identities, groups and tags can be COPYed too."""
    ids = [r[0] for r in await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence('users', 'id')) FROM generate_series(1, $1)", len(people))]
    for person, user_id in zip(people, ids, strict=True):
        person.existing = [user_id]
    fields = _mapped_fields(params)  # only the mapped columns: the rest keep their defaults
    columns = ["id", "workspace_id", "source", "initial_source", "username", *fields]
    head = (workspace_id, "IMPORT", params.source)
    await conn.copy_records_to_table("users", columns=columns, records=[
        (p.existing[0], *head, p.profile.get("username"), *[p.profile.get(f) for f in fields]) for p in people])


async def _update_profiles(workspace_id: int, people: list[Person], params: ImportParams, conn: Any) -> None:
    """OVERWRITE: mapped, non-empty cells replace values, except fields locked by a hand edit."""
    fields = sorted({f for p in people for f in p.profile if f != "username"})
    await conn.execute("CREATE TEMP TABLE import_updates (LIKE users INCLUDING DEFAULTS) ON COMMIT DROP")
    await conn.copy_records_to_table("import_updates", columns=["id", "workspace_id", "username", *fields], records=[
        (p.existing[0], workspace_id, p.profile.get("username"), *(p.profile.get(f) for f in fields)) for p in people])
    sets = [f"{f} = CASE WHEN s.{f} IS NULL OR u.locked_fields::jsonb ? '{f}' THEN u.{f} ELSE s.{f} END"
            for f in fields]
    await conn.execute(
        f"UPDATE users u SET {', '.join([*sets, 'username = COALESCE(u.username, s.username)'])},"
        " updated_at = now() FROM import_updates s WHERE u.workspace_id = $1 AND u.id = s.id", workspace_id)


_IDENTITY_COLUMNS = ["workspace_id", "user_id", "type", "channel", "value", "encryption", "source"]


async def _add_identities(workspace_id: int, people: list[Person], owners: dict[Key, int], source: str,
                          conn: Any) -> None:
    """The keys nobody owned at the lookup. COPY, unless a concurrent writer took one of them meanwhile:
    then the savepoint undoes it and the conflict-tolerant INSERT skips the taken ones, as it always did."""
    records = [(workspace_id, p.existing[0], *k, source) for p in people for k in p.identities if k not in owners]
    if not records:
        return
    await conn.execute("SAVEPOINT import_identities")
    try:
        await conn.copy_records_to_table("identities", columns=_IDENTITY_COLUMNS, records=records)
    except asyncpg.UniqueViolationError:
        await conn.execute("ROLLBACK TO SAVEPOINT import_identities")
        await conn.execute(
            f"INSERT INTO identities ({', '.join(_IDENTITY_COLUMNS)})"
            " SELECT $1, u, t, c, v, e, $7 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])"
            "   AS k(u, t, c, v, e)"
            " ON CONFLICT (workspace_id, type, channel, value) DO NOTHING",
            workspace_id, *(list(column) for column in zip(*(r[1:6] for r in records))), source)
    await conn.execute("RELEASE SAVEPOINT import_identities")


async def _add_groups(workspace_id: int, new: list[Person], old: list[Person], group_ids: list[int],
                      conn: Any) -> None:
    names = sorted({g for people in (new, old) for p in people for g in p.groups})
    by_name: dict[str, int] = {}
    if names:  # a GROUP column names groups; missing ones are created by the import
        await conn.execute(
            "INSERT INTO groups (workspace_id, name, source, labels) SELECT $1, n, 'IMPORT', '[]'::jsonb"
            " FROM unnest($2::text[]) n ON CONFLICT (workspace_id, name) DO NOTHING", workspace_id, names)
        by_name = {r["name"]: r["id"] for r in await conn.fetch(
            "SELECT id, name FROM groups WHERE workspace_id = $1 AND name = ANY($2::text[]) FOR KEY SHARE",
            workspace_id, names)}

    fixed = list(dict.fromkeys(group_ids))

    def memberships(people: list[Person]) -> list[tuple[int, int]]:  # (group id, user id), each pair once
        return [(group_id, p.existing[0]) for p in people
                for group_id in ({*fixed, *(by_name[n] for n in p.groups)} if p.groups else fixed)]

    if added := memberships(new):
        await conn.copy_records_to_table("group_members", columns=["workspace_id", "group_id", "user_id", "source"],
                                         records=[(workspace_id, g, u, "IMPORT") for g, u in added])
    if added := memberships(old):
        await conn.execute(
            "INSERT INTO group_members (workspace_id, group_id, user_id, source)"
            " SELECT $1, g, u, 'IMPORT' FROM unnest($2::bigint[], $3::bigint[]) AS x(g, u)"
            " ON CONFLICT (workspace_id, group_id, user_id) DO NOTHING",
            workspace_id, [g for g, _ in added], [u for _, u in added])


async def _set_tags(workspace_id: int, new: list[Person], old: list[Person], conn: Any) -> None:
    """Imported tag values replace earlier ones unless a person locked them (KEEP_MANUAL)."""
    if records := [(workspace_id, p.existing[0], tag_id, values, "IMPORT", False)
                   for p in new for tag_id, values in p.tags.items()]:
        await conn.copy_records_to_table(
            "user_tags", columns=["workspace_id", "user_id", "tag_id", "values", "source", "locked"], records=records)
    if records := [(p.existing[0], tag_id, values) for p in old for tag_id, values in p.tags.items()]:
        await conn.execute("CREATE TEMP TABLE import_tags (user_id bigint, tag_id bigint, vals text[]) ON COMMIT DROP")
        await conn.copy_records_to_table("import_tags", columns=["user_id", "tag_id", "vals"], records=records)
        await conn.execute(
            "INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked, updated_at)"
            " SELECT $1, user_id, tag_id, vals, 'IMPORT', false, now() FROM import_tags"
            " ON CONFLICT (workspace_id, user_id, tag_id) DO UPDATE SET \"values\" = EXCLUDED.\"values\","
            " source = 'IMPORT', updated_at = now() WHERE NOT user_tags.locked", workspace_id)


PARSE_AHEAD = 3  # batches parsed ahead of the writer (bounded: memory stays constant)


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


_GC_YOUNG_THRESHOLD = 100_000  # container allocations between young collections while importing (default 700)
_lean_gc_users = 0
_saved_gc: tuple[tuple[int, int, int], bool] = (gc.get_threshold(), False)  # threshold, whether we froze


@contextlib.contextmanager
def _lean_gc() -> Iterator[None]:
    """Less cyclic GC while importing: a batch is ~100k small dicts, lists and tuples without cycles, and
    collections kept rescanning them and the worker's whole heap (~40% of the import's Python time).
    What exists is frozen (never rescanned) and young collections come rarely; both undone at the end."""
    global _lean_gc_users, _saved_gc
    if _lean_gc_users == 0:  # imports running side by side in one worker share the setting
        froze = gc.get_freeze_count() == 0  # a heap someone else froze (the API's) stays frozen after us
        if froze:
            gc.freeze()
        _saved_gc = (gc.get_threshold(), froze)
        gc.set_threshold(_GC_YOUNG_THRESHOLD, *_saved_gc[0][1:])
    _lean_gc_users += 1
    try:
        yield
    finally:
        _lean_gc_users -= 1
        if _lean_gc_users == 0:
            threshold, froze = _saved_gc
            gc.set_threshold(*threshold)
            if froze:
                gc.unfreeze()


def error_lines(errors: list[RowError], cells_by_index: dict[int, list[str]]) -> str:
    """CSV lines of the error report for a batch: the original row, its row number and the reason."""
    out = io.StringIO()
    writer = csv.writer(out)
    for error in sorted(errors, key=lambda e: e.index):
        writer.writerow([*cells_by_index[error.index], error.index + 2, error.code, error.message])
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

    # Parsing (phones, emails, tags) is CPU work: worker processes parse batch N+1 while this process
    # writes batch N, so both cores are busy and the database never waits for Python.
    loop = asyncio.get_running_loop()
    with _lean_gc(), _parse_pool() as pool:
        pending: collections.deque[tuple[int, list[list[str]], asyncio.Future[Any]]] = collections.deque()
        source = batches(table.rows(start), start, batch_size)
        for batch_start, cells in itertools.islice(source, PARSE_AHEAD):
            pending.append((batch_start, cells, loop.run_in_executor(pool, parse_batch, batch_start, cells, spec)))
        while pending:
            batch_start, cells, future = pending.popleft()
            parsed, errors = await future
            for next_start, next_cells in itertools.islice(source, 1):
                pending.append((next_start, next_cells,
                                loop.run_in_executor(pool, parse_batch, next_start, next_cells, spec)))
            await run.check_cancelled()
            async with db.transaction() as conn:
                written = await write_batch(run.workspace_id, parsed, params, conn, actor=f"job:{run.id}")
                errors += written.errors
                counts.update(written.counts)
                counts["failed"] += len(errors)
                counts["rows"] += len(cells)
                # Written before the commit and named by the batch: a retried batch overwrites its part.
                part = error_part(parts_dir, batch_start)
                if errors:
                    part.write_text(error_lines(errors, {batch_start + i: c for i, c in enumerate(cells)}),
                                    encoding="utf-8")
                else:
                    part.unlink(missing_ok=True)
                end = batch_start + len(cells)
                await run.save(conn, checkpoint={"next_row": end, "batch_size": batch_size, "counts": dict(counts)},
                               done=end, counts=dict(counts))

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
