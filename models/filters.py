"""`UserFilter` compiled to one SQL WHERE clause over `users u` (plus ordering for keyset pages)."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from models.errors import DomainError
from models.identities import InvalidIdentity, normalize_phone
from models.tag_values import validate


@dataclass
class TagCondition:
    key: str
    op: str  # EQ | IN | CONTAINS | EXISTS | MISSING | GT | LT
    values: list[str] = field(default_factory=list)


@dataclass
class UserFilterSpec:
    ids: list[int] | None = None
    query: str | None = None
    group_ids: list[int] | None = None
    not_in_group_ids: list[int] | None = None
    member_levels: list[str] | None = None
    account_types: list[str] | None = None
    sources: list[str] | None = None
    tags: list[TagCondition] = field(default_factory=list)
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    last_activity_after: dt.datetime | None = None
    last_activity_before: dt.datetime | None = None


class SqlBuilder:
    """Collects positional arguments ($1 is always the workspace id)."""

    def __init__(self, workspace_id: int, id_bound: tuple[str, int] | None = None) -> None:
        self.args: list[Any] = [workspace_id]
        self.where: list[str] = ["u.workspace_id = $1"]
        self._id_bound = id_bound
        self._id_bound_sql: str | None = None

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def bounded(self, column: str) -> str:
        """` AND <column> < $k` for a keyset page ordered by id: the planner cannot push the page's
        `u.id < $k` into EXISTS subqueries by itself, so their index scans would start at the top."""
        if self._id_bound is None:
            return ""
        op, value = self._id_bound
        if self._id_bound_sql is None:
            self._id_bound_sql = f"{op} {self.arg(value)}::bigint"
        return f" AND {column} {self._id_bound_sql}"


def compile_filter(spec: UserFilterSpec | None, b: SqlBuilder, tags_by_key: dict[str, dict[str, Any]],
                   default_region: str) -> None:
    """Append the filter's conditions to `b.where`; unknown tag keys raise UNKNOWN_TAG."""
    if spec is None:
        return
    w = b.where
    if spec.ids is not None:
        w.append(f"u.id = ANY({b.arg(spec.ids)}::bigint[])")
    if spec.query:
        w.append(_query_condition(spec.query.strip(), b, default_region))
    if spec.group_ids is not None:
        w.append("EXISTS (SELECT 1 FROM group_members gm WHERE gm.workspace_id = $1 AND gm.user_id = u.id"
                 f" AND gm.group_id = ANY({b.arg(spec.group_ids)}::bigint[]){b.bounded('gm.user_id')})")
    if spec.not_in_group_ids:
        w.append("NOT EXISTS (SELECT 1 FROM group_members gm WHERE gm.workspace_id = $1 AND gm.user_id = u.id"
                 f" AND gm.group_id = ANY({b.arg(spec.not_in_group_ids)}::bigint[]))")
    for column, values in (("member_level", spec.member_levels), ("account_type", spec.account_types),
                           ("source", spec.sources)):
        if values is not None:
            w.append(f"u.{column} = ANY({b.arg(values)}::text[])")
    for column, op, value in (("created_at", ">=", spec.created_after), ("created_at", "<", spec.created_before),
                              ("last_activity_at", ">=", spec.last_activity_after),
                              ("last_activity_at", "<", spec.last_activity_before)):
        if value is not None:
            w.append(f"u.{column} {op} {b.arg(value)}")
    for i, cond in enumerate(spec.tags):
        w.append(_tag_condition(cond, i, b, tags_by_key))


def _query_condition(query: str, b: SqlBuilder, default_region: str) -> str:
    """Name, username (substring, case-insensitive), or an exact phone / email identity."""
    like = b.arg("%" + re.sub(r"([%_\\])", r"\\\1", query.lower()) + "%")
    values = [query.lower()]
    if re.fullmatch(r"[+\d][\d\s().-]{5,}", query):
        try:
            values.append(normalize_phone(query, None if query.startswith("+") else default_region))
        except InvalidIdentity:
            pass
    return ("(lower(u.display_name) LIKE {l} OR lower(u.username) LIKE {l} OR lower(u.first_name) LIKE {l}"
            " OR lower(u.last_name) LIKE {l} OR lower(u.nickname) LIKE {l}"
            " OR EXISTS (SELECT 1 FROM identities qi WHERE qi.workspace_id = $1 AND qi.user_id = u.id"
            " AND qi.type IN ('PHONE', 'EMAIL', 'WHATSAPP') AND qi.value = ANY({v}::text[])))"
            ).format(l=like, v=b.arg(values))


def _tag_condition(cond: TagCondition, i: int, b: SqlBuilder, tags_by_key: dict[str, dict[str, Any]]) -> str:
    tag = tags_by_key.get(cond.key)
    field_path = ["filter", "tags", str(i)]
    if tag is None:
        raise DomainError("UNKNOWN_TAG", f"no tag with key '{cond.key}'", [*field_path, "key"])
    exists = f"EXISTS (SELECT 1 FROM user_tags ut WHERE ut.workspace_id = $1 AND ut.user_id = u.id AND ut.tag_id = {b.arg(tag['id'])}"
    if cond.op == "MISSING":
        return "NOT " + exists + ")"
    exists += b.bounded("ut.user_id")
    if cond.op == "EXISTS":
        return exists + ")"
    # Each value is checked (and canonicalised) on its own: IN ["gold", "silver"] on a TEXT tag is fine.
    values = [validate(tag, [v], [*field_path, "values"])[0] for v in cond.values]
    if not values:
        raise DomainError("INVALID_FILTER", f"operator {cond.op} needs values", [*field_path, "values"])
    if cond.op == "EQ":
        return exists + f' AND ut."values" = {b.arg(sorted(set(values)))}::text[])'
    if cond.op == "IN":
        return exists + f' AND ut."values" && {b.arg(values)}::text[])'
    if cond.op == "CONTAINS":
        return exists + f' AND ut."values" @> {b.arg(values)}::text[])'
    if cond.op in ("GT", "LT"):
        cast = {"NUMBER": "numeric", "DATE": "date"}.get(tag["type"])
        if cast is None:
            raise DomainError("INVALID_FILTER", f"{cond.op} works on NUMBER and DATE tags only", [*field_path, "op"])
        sign = ">" if cond.op == "GT" else "<"
        return exists + f' AND (ut."values"[1])::{cast} {sign} ({b.arg(values[0])}::text)::{cast})'
    raise DomainError("INVALID_FILTER", f"unknown operator {cond.op}", [*field_path, "op"])


# Sort keys for keyset pagination: SQL expression (matching an index) and cursor value type.
ORDER_COLUMNS: dict[str, str] = {
    "ID": "u.id",
    "CREATED_AT": "u.created_at",
    "UPDATED_AT": "u.updated_at",
    "LAST_ACTIVITY_AT": "COALESCE(u.last_activity_at, '-infinity'::timestamptz)",
    "DISPLAY_NAME": "COALESCE(lower(u.display_name), '')",
}
