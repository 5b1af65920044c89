"""Changing a workspace's settings: account deletion switch, user-list columns, default phone region."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
import phonenumbers

from models import db
from models.errors import DomainError

MAX_LIST_COLUMNS = 20


def checked_changes(changes: dict[str, Any], tag_keys: Collection[str]) -> dict[str, Any]:
    """The changes, normalised; DomainError on an unknown column tag, too many columns or an unknown region."""
    result = dict(changes)
    if "user_list_columns" in result:
        columns = list(dict.fromkeys(result["user_list_columns"]))
        if len(columns) > MAX_LIST_COLUMNS:
            raise DomainError("TOO_MANY_COLUMNS", f"at most {MAX_LIST_COLUMNS} user-list columns",
                              ["userListColumns"])
        for i, key in enumerate(result["user_list_columns"]):
            if key not in tag_keys:
                raise DomainError("UNKNOWN_TAG", f"no tag with key '{key}'", ["userListColumns", str(i)])
        result["user_list_columns"] = columns
    if "default_region" in result:
        region = result["default_region"].strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise DomainError("INVALID_REGION", f"'{result['default_region']}' is not a known phone region",
                              ["defaultRegion"])
        result["default_region"] = region
    return result


async def update(workspace_id: int, changes: dict[str, Any], conn: Any) -> tuple[Any, Any]:
    """Apply checked changes; returns the rows (before, after)."""
    before = await db.fetchrow("SELECT * FROM workspaces WHERE id = $1 FOR UPDATE", workspace_id, conn=conn)
    if not changes:
        return before, before
    values = [orjson.dumps(v).decode() if name == "user_list_columns" else v for name, v in changes.items()]
    sets = ", ".join(f"{name} = ${i + 2}{'::jsonb' if name == 'user_list_columns' else ''}"
                     for i, name in enumerate(changes))
    after = await db.fetchrow(f"UPDATE workspaces SET {sets} WHERE id = $1 RETURNING *", workspace_id, *values,
                              conn=conn)
    return before, after


def differences(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """What changed, setting by setting: (old, new) values for the audit log."""
    changed = {}
    for name in ("account_deletion_enabled", "user_list_columns", "default_region"):
        old, new = before[name], after[name]
        if name == "user_list_columns":
            old, new = db.json_value(old), db.json_value(new)
        if old != new:
            changed[name] = (old, new)
    return changed
