"""Validation of tag values against the tag's type, and writing them for users."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from models import db
from models.enums import TagSource, TagType
from models.errors import DomainError

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


def validate(tag: Any, values: Sequence[str], field: list[str] | None = None) -> list[str]:
    """The canonical stored form of `values` for `tag`, or DomainError INVALID_TAG_VALUE."""
    tag_type = TagType(tag["type"] if isinstance(tag, dict) else tag.type)
    allowed = tag["allowed_values"] if isinstance(tag, dict) else tag.allowed_values
    key = tag["key"] if isinstance(tag, dict) else tag.key
    cleaned = [str(v).strip() for v in values if str(v).strip() != ""]

    def bad(message: str) -> DomainError:
        return DomainError("INVALID_TAG_VALUE", f"tag '{key}': {message}", field)

    if not cleaned:
        raise bad("at least one value is required")
    if tag_type is TagType.MULTI_VALUE:
        unknown = [v for v in cleaned if allowed and v not in allowed]
        if unknown:
            raise bad(f"{', '.join(unknown)} not among the allowed values {', '.join(allowed)}")
        return sorted(set(cleaned))
    if len(cleaned) != 1:
        raise bad(f"a {tag_type.value} tag holds exactly one value")
    value = cleaned[0]
    if tag_type is TagType.NUMBER:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise bad(f"'{value}' is not a number") from None
        if not number.is_finite():
            raise bad(f"'{value}' is not a number")
        return [format(number.normalize(), "f")]
    if tag_type is TagType.BOOLEAN:
        if value.lower() in _TRUE:
            return ["true"]
        if value.lower() in _FALSE:
            return ["false"]
        raise bad(f"'{value}' is not true or false")
    if tag_type is TagType.DATE:
        try:
            return [dt.date.fromisoformat(value).isoformat()]
        except ValueError:
            raise bad(f"'{value}' is not a date (YYYY-MM-DD)") from None
    if allowed and value not in allowed:
        raise bad(f"'{value}' is not among the allowed values {', '.join(allowed)}")
    if len(value) > 1000:
        raise bad("a value is at most 1000 characters")
    return [value]


async def lock_tags(workspace_id: int, tag_ids: Sequence[int], conn: Any, field: list[str] | None = None) -> None:
    """Key-share lock the tags until the transaction ends, or UNKNOWN_TAG when one is gone.

    user_tags has no foreign key: this is what makes a concurrent tagDelete wait for values written meanwhile.
    """
    wanted = set(tag_ids)
    found = await conn.fetch("SELECT id FROM tags WHERE workspace_id = $1 AND id = ANY($2::bigint[]) FOR KEY SHARE",
                             workspace_id, list(wanted))
    if len(found) != len(wanted):
        raise DomainError("UNKNOWN_TAG", "the tag does not exist (any more)", field)


async def _serialise_batches(workspace_id: int, tag_id: int, conn: Any) -> None:
    """Batch writes of one tag run one at a time: their anti-joins must not read a value another batch is
    removing (an uncommitted untag would make usersTag skip the user, and the value would be lost)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('user_tags:' || $1::bigint || ':' || $2::bigint, 0))",
                       workspace_id, tag_id)


async def set_values(workspace_id: int, user_id: int, tag_id: int, values: list[str], conn: Any, *,
                     source: TagSource = TagSource.MANUAL, locked: bool = True) -> None:
    """Set one user's value of one tag (a hand-set value is locked against imports)."""
    await lock_tags(workspace_id, [tag_id], conn, ["tags"])
    await conn.execute(
        "INSERT INTO user_tags (workspace_id, user_id, tag_id, \"values\", source, locked, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now())"
        " ON CONFLICT (workspace_id, user_id, tag_id) DO UPDATE SET \"values\" = EXCLUDED.\"values\","
        " source = EXCLUDED.source, locked = EXCLUDED.locked, updated_at = now()",
        workspace_id, user_id, tag_id, values, source.value, locked)


async def tag_selected(b: Any, selected: str, tag_id: int, values: list[str], conn: Any, *, locked: bool) -> int:
    """Set one tag's value on every selected user (one statement); returns how many changed.

    `locked` is the conflict policy chosen now: True keeps the value against later imports
    (KEEP_MANUAL), False lets the next import replace it (OVERWRITE). Existing values are updated
    and missing ones inserted by two disjoint set-based steps (no per-row ON CONFLICT, see db).
    """
    tag, vals, lock = b.arg(tag_id), b.arg(values), b.arg(locked)
    sql = f"""WITH selected AS ({selected}),
updated AS (
  UPDATE user_tags ut SET "values" = {vals}::text[], source = 'BULK', locked = {lock}, updated_at = now()
  FROM selected s WHERE ut.workspace_id = $1 AND ut.tag_id = {tag} AND ut.user_id = s.id
    AND (ut."values" IS DISTINCT FROM {vals}::text[] OR ut.locked IS DISTINCT FROM {lock}) RETURNING 1),
inserted AS (
  INSERT INTO user_tags (workspace_id, user_id, tag_id, "values", source, locked, updated_at)
  SELECT $1, s.id, {tag}, {vals}::text[], 'BULK', {lock}, now() FROM selected s
  WHERE NOT EXISTS (SELECT 1 FROM user_tags o WHERE o.workspace_id = $1 AND o.tag_id = {tag} AND o.user_id = s.id)
  {db.ON_CONFLICT} RETURNING 1)
SELECT (SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted) AS changed"""
    await lock_tags(b.args[0], [tag_id], conn, ["key"])
    await _serialise_batches(b.args[0], tag_id, conn)
    row = await db.fetchrow_skipping_existing(
        conn, sql, b.args,
        'ON CONFLICT (workspace_id, tag_id, user_id) DO UPDATE SET "values" = EXCLUDED."values", source = \'BULK\','
        ' locked = EXCLUDED.locked, updated_at = now() WHERE user_tags."values" IS DISTINCT FROM EXCLUDED."values"'
        ' OR user_tags.locked IS DISTINCT FROM EXCLUDED.locked')
    assert row is not None
    return row["changed"]


async def untag_selected(b: Any, selected: str, tag_id: int, conn: Any) -> int:
    await lock_tags(b.args[0], [tag_id], conn, ["key"])
    await _serialise_batches(b.args[0], tag_id, conn)
    sql = f"""WITH selected AS ({selected}), removed AS (
  DELETE FROM user_tags ut USING selected s
  WHERE ut.workspace_id = $1 AND ut.tag_id = {b.arg(tag_id)} AND ut.user_id = s.id RETURNING 1)
SELECT count(*) FROM removed"""
    return await conn.fetchval(sql, *b.args)
