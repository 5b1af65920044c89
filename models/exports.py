"""Exports of users: which columns a caller may export, how they are labelled, and the SQL that reads them.

An export is planned when it starts (the caller's permissions decide its columns once; the columns the
caller may not read are left out and listed) and run later by the EXPORT job (jobs/exports.py), which
reads the selected users in keyset batches with `batch_sql` — one statement per batch that joins
identities and tag values through aggregates, with every text cell already guarded against formula
injection, so the CSV text can come straight out of PostgreSQL's COPY.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models import db
from models.enums import IdentityType
from models.errors import DomainError
from models.filters import SqlBuilder, TagCondition, UserFilterSpec, compile_filter
from models.permissions import Principal
from models.profile import PROFILE_FIELDS

NONE, AES = "NONE", "AES"
# Seed 001's labels: "MOBILE(UNENCRYPTED)", "MOBILE(AES)".
IDENTITY_LABELS = {IdentityType.PHONE: "MOBILE", IdentityType.EMAIL: "EMAIL", IdentityType.WHATSAPP: "WHATSAPP",
                   IdentityType.INSTAGRAM: "INSTAGRAM", IdentityType.EXTERNAL_ID: "EXTERNAL_ID"}
# Several values in one cell (identities of one type, a MULTI_VALUE tag) are joined by this.
SEPARATOR = ";"
# Cells starting with these could run as a spreadsheet formula (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# ...except plain numbers (one, or several joined by SEPARATOR): E.164 phones and negative numbers stay
# usable, and a cell made only of digits, signs, dots and ';' cannot call a function or reach a resource.
PLAIN_NUMBERS = r"^[+-]?[0-9.]+(;[+-]?[0-9.]+)*$"
_PLAIN_NUMBERS = re.compile(PLAIN_NUMBERS)


def _ts(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


# Field columns by their GraphQL name: (SQL text expression over `users u`, free text that needs the
# formula guard?). Profile fields are subject to Principal.can_read_field, like the `User` type.
_GLOBAL_ID = "rtrim(translate(encode(convert_to('User:' || u.id, 'UTF8'), 'base64'), '+/', '-_'), '=')"
_FREE_TEXT = {"username", "display_name", "first_name", "last_name", "nickname", "city", "country", "language",
              "avatar_url", "status_message", "member_level", "role", "initial_source"}
_FIELD_SQL: dict[str, str] = {
    "id": _GLOBAL_ID, "username": "u.username", "account_type": "u.account_type",
    **{name: f"u.{name}::text" if name in ("birthday", "level", "friending_allowed") else f"u.{name}"
       for name in PROFILE_FIELDS},
    "source": "u.source", "initial_source": "u.initial_source",
    "created_at": _ts("u.created_at"), "updated_at": _ts("u.updated_at"), "last_activity_at": _ts("u.last_activity_at"),
}


# As schema.common's (models do not import the GraphQL layer).
def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


EXPORT_FIELDS: tuple[str, ...] = tuple(camel(n) for n in _FIELD_SQL)  # in this order by default


@dataclass(frozen=True)
class ExportColumn:
    """One CSV column: a user field, the identities of one type, or one tag's values."""

    kind: str  # FIELD | IDENTITY | TAG
    key: str  # snake field name | identity type | tag key
    label: str  # the CSV header
    encryption: str = NONE  # IDENTITY: NONE | AES
    tag_id: int | None = None


@dataclass
class ColumnRequest:
    """The columns asked for; None for a kind means "none of it" unless the whole request is None."""

    fields: Sequence[str] | None = None
    identities: Sequence[str] | None = None
    tags: Sequence[str] | None = None


@dataclass
class ColumnPlan:
    columns: list[ExportColumn] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)  # labels of columns the caller may not read
    errors: list[DomainError] = field(default_factory=list)


def plan_columns(principal: Principal, request: ColumnRequest | None, encryption: Mapping[str, str],
                 tags: Mapping[str, Mapping[str, Any]]) -> ColumnPlan:
    """The caller's columns, in the requested order. Unknown names are errors; unreadable columns are
    left out and listed by label (never exported masked)."""
    plan = ColumnPlan()
    if request is None:  # everything: every field, identity type and tag of the workspace
        request = ColumnRequest(fields=EXPORT_FIELDS, identities=[t.value for t in IdentityType],
                                tags=sorted(tags, key=lambda k: tags[k]["id"]))
    wanted: list[tuple[ExportColumn, bool]] = []
    for i, name in enumerate(dict.fromkeys(request.fields or [])):
        key = snake(name)
        if key not in _FIELD_SQL:
            plan.errors.append(DomainError("UNKNOWN_FIELD", f"'{name}' is not an exportable field "
                                           f"({', '.join(EXPORT_FIELDS)})", ["columns", "fields", str(i)]))
            continue
        readable = key not in PROFILE_FIELDS or principal.can_read_field(key)
        wanted.append((ExportColumn("FIELD", key, camel(key)), readable))
    for type_ in dict.fromkeys(request.identities or []):
        method = encryption.get(type_, NONE)
        label = f"{IDENTITY_LABELS[IdentityType(type_)]}({'UNENCRYPTED' if method == NONE else method})"
        # Raw identity values need pii:read (or identity:<TYPE>:read), encrypted or not: the key opens them.
        wanted.append((ExportColumn("IDENTITY", type_, label, encryption=method),
                       principal.can_read_identity(type_)))
    names = [t["name"] for t in tags.values()]
    for i, key in enumerate(dict.fromkeys(request.tags or [])):
        tag = tags.get(key)
        if tag is None:
            plan.errors.append(DomainError("UNKNOWN_TAG", f"no tag with key '{key}'", ["columns", "tags", str(i)]))
            continue
        # The seed's rule is "the tag name as header"; a name shared by two tags gets its key to tell them apart.
        label = tag["name"] if names.count(tag["name"]) == 1 and tag["name"] not in EXPORT_FIELDS \
            else f"{tag['name']} ({key})"
        wanted.append((ExportColumn("TAG", key, label, tag_id=tag["id"]), principal.can_read_tag(key)))
    plan.columns = [c for c, readable in wanted if readable]
    plan.omitted = [c.label for c, readable in wanted if not readable]
    if not plan.errors and not plan.columns:
        plan.errors.append(DomainError("NO_COLUMNS", "none of the requested columns may be exported with this key"
                                       + (f" (left out: {', '.join(plan.omitted)})" if plan.omitted else ""),
                                       ["columns"]))
    return plan


def check_encryption(entries: Sequence[tuple[str, str]]) -> tuple[dict[str, str], list[DomainError]]:
    """`identityEncryption` as {type: NONE|AES}; naming a type twice is an error."""
    chosen: dict[str, str] = {}
    errors = []
    for i, (type_, method) in enumerate(entries):
        if type_ in chosen:
            errors.append(DomainError("DUPLICATE_IDENTITY_TYPE", f"{type_} is given twice",
                                      ["identityEncryption", str(i), "type"]))
        chosen[type_] = method
    return chosen, errors


# --- job parameters ------------------------------------------------------------------------------

_DATETIME_FIELDS = ("created_after", "created_before", "last_activity_after", "last_activity_before")


def spec_to_json(spec: UserFilterSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    value = dataclasses.asdict(spec)
    for name in _DATETIME_FIELDS:
        if value[name] is not None:
            value[name] = value[name].isoformat()
    return value


def spec_from_json(value: dict[str, Any] | None) -> UserFilterSpec | None:
    if value is None:
        return None
    value = dict(value)
    value["tags"] = [TagCondition(**t) for t in value.get("tags") or []]
    for name in _DATETIME_FIELDS:
        if value.get(name) is not None:
            value[name] = dt.datetime.fromisoformat(value[name])
    return UserFilterSpec(**value)


@dataclass
class ExportParams:
    """What exportStart stored in the job's params."""

    filter: UserFilterSpec | None
    columns: list[ExportColumn]
    omitted: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"filter": spec_to_json(self.filter), "columns": [dataclasses.asdict(c) for c in self.columns],
                "omitted_columns": self.omitted, "format": "CSV_ZIP"}

    @classmethod
    def from_json(cls, params: dict[str, Any]) -> ExportParams:
        return cls(filter=spec_from_json(params.get("filter")),
                   columns=[ExportColumn(**c) for c in params["columns"]], omitted=params.get("omitted_columns", []))


# --- SQL -----------------------------------------------------------------------------------------

async def tag_definitions(workspace_id: int, conn: Any = None) -> dict[str, dict[str, Any]]:
    rows = await db.fetch("SELECT * FROM tags WHERE workspace_id = $1", workspace_id, conn=conn)
    return {r["key"]: {**dict(r), "allowed_values": db.json_value(r["allowed_values"])} for r in rows}


class Selection:
    """The selected users as SQL, recompiled from the stored filter (the same compile_filter as `users`)."""

    def __init__(self, workspace_id: int, spec: UserFilterSpec | None, tags: Mapping[str, Any], region: str) -> None:
        self.workspace_id, self.spec, self.tags, self.region = workspace_id, spec, tags, region

    def _builder(self, id_bound: tuple[str, int] | None = None) -> SqlBuilder:
        b = SqlBuilder(self.workspace_id, id_bound)
        compile_filter(self.spec, b, dict(self.tags), self.region)
        return b

    def count_sql(self) -> tuple[str, list[Any]]:
        b = self._builder()
        return f"SELECT count(*) FROM users u WHERE {' AND '.join(b.where)}", b.args

    def page_sql(self, after_id: int, limit: int) -> tuple[str, list[Any]]:
        """The next `limit` selected ids after `after_id` (the bound also enters the filter's EXISTS)."""
        b = self._builder((">", after_id))
        b.where.append(f"u.id > {b.arg(after_id)}::bigint")
        return (f"SELECT u.id FROM users u WHERE {' AND '.join(b.where)} ORDER BY u.id LIMIT {int(limit)}", b.args)


def guard_sql(expr: str) -> str:
    """SQL twin of `guard`: a leading `'` on a text cell that a spreadsheet would run as a formula."""
    triggers = ", ".join("E'\\t'" if c == "\t" else "E'\\r'" if c == "\r" else f"'{c}'" for c in FORMULA_TRIGGERS)
    return (f"CASE WHEN left({expr}, 1) IN ({triggers}) AND {expr} !~ '{PLAIN_NUMBERS}'"
            f" THEN '''' || {expr} ELSE {expr} END")


def guard(cell: str) -> str:
    if cell.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBERS.match(cell):
        return "'" + cell
    return cell


def batch_sql(workspace_id: int, columns: Sequence[ExportColumn], ids: Sequence[int]) -> str:
    """One row of text cells per user of `ids` (in id order), identities and tags aggregated per user.

    Only integers are inlined (no parameters), so the same text runs under COPY ... TO STDOUT.
    AES identity cells come out as plain text (unguarded): Python encrypts them.
    """
    ws = int(workspace_id)
    id_list = "'{" + ",".join(str(int(i)) for i in ids) + "}'::bigint[]"
    cells, ident_aggs, tag_aggs = [], [], []
    for n, col in enumerate(columns):
        if col.kind == "FIELD":
            expr = _FIELD_SQL[col.key]
            cells.append(guard_sql(expr) if col.key in _FREE_TEXT else expr)
        elif col.kind == "IDENTITY":
            # Hashed identifiers (MD5/SHA256) are not "UNENCRYPTED" values: only plain ones are exported.
            ident_aggs.append(
                f"string_agg(CASE WHEN i.channel = '' THEN i.value ELSE i.channel || ':' || i.value END,"
                f" '{SEPARATOR}' ORDER BY i.id) FILTER (WHERE i.type = '{IdentityType(col.key).value}') AS c{n}")
            cells.append(f"ids.c{n}" if col.encryption == AES else guard_sql(f"ids.c{n}"))
        else:
            tag_aggs.append(f"max(array_to_string(t.\"values\", '{SEPARATOR}'))"
                            f" FILTER (WHERE t.tag_id = {int(col.tag_id)}) AS c{n}")
            cells.append(guard_sql(f"tg.c{n}"))
    joins = []
    if ident_aggs:
        joins.append(f"LEFT JOIN (SELECT i.user_id, {', '.join(ident_aggs)} FROM identities i"
                     f" WHERE i.workspace_id = {ws} AND i.user_id = ANY({id_list}) AND i.encryption = 'NONE'"
                     " GROUP BY i.user_id) ids ON ids.user_id = u.id")
    if tag_aggs:
        tag_ids = "'{" + ",".join(str(int(c.tag_id)) for c in columns if c.kind == "TAG") + "}'::bigint[]"
        # The id range lets the (workspace_id, tag_id, user_id) key be scanned per tag; without it the
        # planner read the whole table for every batch.
        joins.append(f"LEFT JOIN (SELECT t.user_id, {', '.join(tag_aggs)} FROM user_tags t"
                     f" WHERE t.workspace_id = {ws} AND t.tag_id = ANY({tag_ids}) AND t.user_id = ANY({id_list})"
                     f" AND t.user_id BETWEEN {min(ids)} AND {max(ids)} GROUP BY t.user_id) tg ON tg.user_id = u.id")
    return (f"SELECT {', '.join(cells)} FROM users u {' '.join(joins)}"
            f" WHERE u.workspace_id = {ws} AND u.id = ANY({id_list}) ORDER BY u.id")


# --- the workspace's export key ------------------------------------------------------------------

async def export_key(workspace_id: int) -> bytes:
    """The workspace's AES-256 key for encrypted export columns, created on first use when missing
    (workspaces made before keys existed, or seeded directly)."""
    key = await db.fetchval("SELECT export_key FROM workspaces WHERE id = $1", workspace_id)
    if key is None:  # the conditional UPDATE lets one of two concurrent first uses win
        key = await db.fetchval(
            "UPDATE workspaces SET export_key = COALESCE(export_key, $2) WHERE id = $1 RETURNING export_key",
            workspace_id, secrets.token_bytes(32))
    if key is None:
        raise DomainError("NOT_FOUND", "workspace not found")
    return bytes(key)
