"""Planning an import batch: who is new, who exists, the new users' ids and the rows to COPY for them.

Planning reads the database but writes nothing, so the next batch is planned while the current one is
written (jobs.imports). It then cannot see what the current batch has not committed yet; the `Overlay`
tells it: the owner of every key the current batch writes and those users' identity counts. The writer
checks the plan in its own transaction (the owners still exist) and plans again there when not.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.id_mapping import Person, plan_batch
from models.import_rows import NAME_TARGETS, ColumnRule, Key, ParsedRow, RowError
from models.profile import PROFILE_FIELDS


@dataclass
class Overlay:
    """What a batch still being written will have committed, for planning the next one meanwhile: the
    person that owns each of its keys (their identity counts are worked out only for the few users the
    next batch meets)."""

    owners: dict[Key, Person]
    users: dict[int, Person]  # every user the batch writes (created or updated), by id
    planned: Planned

    def counts_of(self, person: Person) -> Counter[str]:
        total = Counter(self.planned.counts.get(person.existing[0], ()))
        total.update(k[0] for k in person.identities if k not in self.planned.owners)
        return total


@dataclass
class Planned:
    rows: list[ParsedRow]
    owners: dict[Key, int]  # existing owner of each known key, as the plan saw it
    new: list[Person]  # existing = [the id given to the new user]
    old: list[Person]  # existing = the users they match (several: to be merged)
    errors: list[RowError]
    skipped: int
    counts: dict[int, Counter[str]]  # identity counts of the matched users, as the plan saw them
    # COPY payloads for the new people by table, built with these ids of the GROUP column's names.
    new_rows: dict[str, bytes] = field(default_factory=dict)
    groups_by_name: dict[str, int] = field(default_factory=dict)

    def overlay(self) -> Overlay | None:
        """The overlay for planning the next batch; None when a merge makes the owners unpredictable
        (the survivor is picked by the writer), and the next batch is then planned after this one commits."""
        if any(len(p.existing) > 1 for p in self.old):
            return None
        people = [*self.new, *self.old]
        return Overlay({k: p for p in people for k in p.identities}, {p.existing[0]: p for p in people}, self)


def mapped_fields(rules: list[ColumnRule]) -> list[str]:
    mapped = {NAME_TARGETS[r.target] for r in rules if r.target in NAME_TARGETS} | \
        {r.field for r in rules if r.target == "PROFILE" and r.field}
    return [f for f in PROFILE_FIELDS if f in mapped]


async def owners_of(workspace_id: int, keys: list[Key], conn: Any) -> dict[Key, int]:
    """Current owner of each known key (as resolution.owners, for the import's tuple keys).

    One index probe per key (LATERAL ... LIMIT 1 keeps it a nested loop): a plain join of 10k keys turns
    into a hash join over the whole identities table once it is analyzed, slower with every batch. The keys
    travel as one JSON document: three text arrays cost asyncpg a Python type check per element."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT k.n, i.user_id FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS k(key, n)"
        " CROSS JOIN LATERAL (SELECT user_id FROM identities i WHERE i.workspace_id = $1 AND i.type = k.key->>0"
        "   AND i.channel = k.key->>1 AND i.value = k.key->>2 LIMIT 1) i"
        # A stray identity (its user deleted, not yet swept: models.orphans) owns nothing. A LATERAL probe
        # of the primary key, not an EXISTS: with statistics gone stale mid-import, that became a scan of the
        # workspace's users for every key (and `u.workspace_id = $1` here, a skip scan of another index;
        # the identity's workspace is its user's).
        " CROSS JOIN LATERAL (SELECT 1 FROM users u WHERE u.id = i.user_id) live",
        workspace_id, orjson.dumps(keys).decode())
    return {keys[n - 1]: user_id for n, user_id in rows}


async def identity_counts(workspace_id: int, user_ids: set[int], conn: Any) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {}
    if user_ids:
        for r in await conn.fetch(
                "SELECT user_id, type, count(*) AS n FROM identities WHERE workspace_id = $1"
                " AND user_id = ANY($2::bigint[]) GROUP BY user_id, type", workspace_id, list(user_ids)):
            counts.setdefault(r["user_id"], Counter())[r["type"]] = r["n"]
    return counts


# One thread for all planning: the default executor's several threads each kept a malloc arena of freed
# batches, and a 1M-row import's RSS doubled (344 MB against 157 MB).
_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="import-plan")


@dataclass
class BatchContext:
    """What planning needs besides the rows: the job's parameters, resolved."""

    workspace_id: int
    overwrite: bool
    group_ids: list[int]
    source: str
    fields: list[str]  # the mapped profile columns, in users' column order


async def plan(ctx: BatchContext, rows: list[ParsedRow], conn: Any, overlay: Overlay | None = None) -> Planned:
    """Plan a batch against the committed state plus `overlay`. The pure-Python parts run in a thread, so
    that the batch being written meanwhile gets the event loop (and the GIL) whenever the database answers."""
    loop = asyncio.get_running_loop()
    keys = await loop.run_in_executor(_THREAD, _keys_of, rows)
    owners = await owners_of(ctx.workspace_id, keys, conn)
    if overlay:
        owners.update((k, person.existing[0]) for k in keys if (person := overlay.owners.get(k)) is not None)
    users = set(owners.values())
    # Users the batch being written creates or changes (met through any of their keys): their identity
    # counts as they will be once it commits.
    in_flight = {u: overlay.users[u] for u in users if u in overlay.users} if overlay else {}
    counts = await identity_counts(ctx.workspace_id, users - in_flight.keys(), conn)
    if overlay:
        counts.update((user_id, overlay.counts_of(person)) for user_id, person in in_flight.items())
    planned = await loop.run_in_executor(_THREAD, _plan_in_memory, rows, owners, counts, ctx.overwrite)
    if planned.new:
        ids = [r[0] for r in await conn.fetch(
            "SELECT nextval(pg_get_serial_sequence('users', 'id')) FROM generate_series(1, $1)", len(planned.new))]
        for person, user_id in zip(planned.new, ids, strict=True):
            person.existing = [user_id]
        names = sorted({g for p in planned.new for g in p.groups})
        planned.groups_by_name = {r["name"]: r["id"] for r in await conn.fetch(
            "SELECT id, name FROM groups WHERE workspace_id = $1 AND name = ANY($2::text[])",
            ctx.workspace_id, names)} if names else {}
        if len(planned.groups_by_name) == len(names):  # else the writer creates the groups, then builds these
            planned.new_rows = await loop.run_in_executor(_THREAD, new_rows_csv, ctx, planned.new,
                                                          planned.groups_by_name)
    return planned


async def plan_ahead(ctx: BatchContext, rows: list[ParsedRow], conn: Any,
                     overlay: Overlay | None) -> tuple[Planned, Overlay | None]:
    """`plan`, and the overlay for planning the batch after it while this one is written."""
    planned = await plan(ctx, rows, conn, overlay)
    return planned, await asyncio.get_running_loop().run_in_executor(_THREAD, planned.overlay)


def _keys_of(rows: list[ParsedRow]) -> list[Key]:
    return list(dict.fromkeys(k for r in rows for k in r.identities))


def _plan_in_memory(rows: list[ParsedRow], owners: dict[Key, int], counts: dict[int, Counter[str]],
                    overwrite: bool) -> Planned:
    result = plan_batch(rows, owners, counts)
    new = [p for p in result.people if not p.existing]
    old = [p for p in result.people if p.existing]
    skipped = 0
    if not overwrite:  # IGNORE: a contact that already exists stays exactly as it was
        skipped = sum(len(p.rows) for p in old)
        old = []
    return Planned(rows, owners, new, old, result.errors, skipped, counts)


# Columns of the COPY payloads for new people, by table.
COPY_COLUMNS = {
    "identities": ["workspace_id", "user_id", "type", "channel", "value", "encryption", "source"],
    "group_members": ["workspace_id", "group_id", "user_id", "source"],
    "user_tags": ["workspace_id", "user_id", "tag_id", "values", "source", "locked"],
}


def user_columns(ctx: BatchContext) -> list[str]:
    return ["id", "workspace_id", "source", "initial_source", "username", *ctx.fields]


def new_rows_csv(ctx: BatchContext, people: list[Person], group_ids_by_name: dict[str, int]) -> dict[str, bytes]:
    """COPY payloads (CSV) for new people, by table: nothing exists yet for users created in the writing
    transaction. Built here, in the planning thread, so that writing them is only sending bytes: asyncpg's
    per-value encoding would otherwise run between the statements, with the database waiting.
    Every text is quoted, so an unquoted empty field is a NULL and nothing else (csv.writer took 8 µs a person,
    these f-strings 5)."""
    ws, source = ctx.workspace_id, _quoted(ctx.source)
    fixed = list(dict.fromkeys(ctx.group_ids))
    fields = ctx.fields
    users, identities, members, tags = [], [], [], []
    user_head = f",{ws},IMPORT,{source},"
    tag_tails: dict[tuple[Any, ...], str] = {}  # ",tag_id,values,source,locked" by (tag id, *values): they repeat
    for person in people:
        user_id = person.existing[0]
        profile = person.profile
        username = profile.get("username")
        users.append(f"{user_id}{user_head}{'' if username is None else _quoted(username)}"
                     + "".join("," if (v := profile.get(f)) is None else "," + _quoted(str(v)) for f in fields))
        head = f"{ws},{user_id}"
        identities.extend(f"{head},{t},{_quoted(c)},{_quoted(v)},{e},{source}" for t, c, v, e in person.identities)
        groups = dict.fromkeys([*fixed, *(group_ids_by_name[n] for n in person.groups)]) if person.groups else fixed
        members.extend(f"{ws},{g},{user_id},IMPORT" for g in groups)
        for tag_id, values in person.tags.items():
            tail = tag_tails.get((tag_id, *values))
            if tail is None:
                tail = tag_tails[(tag_id, *values)] = f",{tag_id},{_quoted(_array(values))},IMPORT,f"
            tags.append(head + tail)
    return {table: "".join(line + "\n" for line in lines).encode()
            for table, lines in (("users", users), ("identities", identities), ("group_members", members),
                                 ("user_tags", tags))}


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _array(values: list[str]) -> str:
    """A text[] literal with every element quoted (array_in's own escapes for quotes and backslashes)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
