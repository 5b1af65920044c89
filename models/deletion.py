"""Deleting users for good: their identities, group memberships, tag values and timeline go with them."""
from __future__ import annotations

from typing import Any

from models import db, orphans
from models.errors import DomainError
from models.filters import SqlBuilder


async def delete_selected(b: SqlBuilder, selected: str, conn: Any) -> list[int]:
    """Delete the selected users and all their rows; DELETION_DISABLED unless the workspace allows it.

    The workspace row is share-locked so that switching deletion off waits for a deletion under way.
    """
    enabled = await db.fetchval("SELECT account_deletion_enabled FROM workspaces WHERE id = $1 FOR SHARE",
                                b.args[0], conn=conn)
    if not enabled:
        raise DomainError("DELETION_DISABLED", "account deletion is disabled for this workspace; an ADMIN can"
                          " enable it with workspaceSettingsUpdate(accountDeletionEnabled: true)")
    rows = await db.fetch(f"DELETE FROM users WHERE workspace_id = $1 AND id IN ({selected}) RETURNING id",
                          *b.args, conn=conn)
    deleted = sorted(r["id"] for r in rows)
    await orphans.forget(b.args[0], "user", deleted, conn)
    return deleted
