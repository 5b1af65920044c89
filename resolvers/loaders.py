"""Per-request DataLoaders: each nested list on a page of users costs one query, not one per user."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from strawberry.dataloader import DataLoader

from models import db

Rows = list[asyncpg.Record]


def _grouped(sql: str, workspace_id: int, key: str = "user_id"
             ) -> Callable[[Sequence[int]], Awaitable[list[Rows]]]:
    async def load(ids: Sequence[int]) -> list[Rows]:
        by_key: dict[int, Rows] = defaultdict(list)
        for row in await db.fetch(sql, workspace_id, list(ids)):
            by_key[row[key]].append(row)
        return [by_key.get(i, []) for i in ids]
    return load


def _single(sql: str, workspace_id: int) -> Callable[[Sequence[int]], Awaitable[list[asyncpg.Record | None]]]:
    async def load(ids: Sequence[int]) -> list[asyncpg.Record | None]:
        rows = {r["id"]: r for r in await db.fetch(sql, workspace_id, list(ids))}
        return [rows.get(i) for i in ids]
    return load


class Loaders:
    """All loaders of one request, scoped to the caller's workspace."""

    def __init__(self, workspace_id: int) -> None:
        w = workspace_id
        self.user = DataLoader(_single(
            "SELECT * FROM users WHERE workspace_id = $1 AND id = ANY($2::bigint[])", w))
        self.group = DataLoader(_single(
            "SELECT * FROM groups WHERE workspace_id = $1 AND id = ANY($2::bigint[])", w))
        self.tag = DataLoader(_single(
            "SELECT * FROM tags WHERE workspace_id = $1 AND id = ANY($2::bigint[])", w))
        self.tag_group = DataLoader(_single(
            "SELECT * FROM tag_groups WHERE workspace_id = $1 AND id = ANY($2::bigint[])", w))
        self.identities_by_user = DataLoader(_grouped(
            "SELECT * FROM identities WHERE workspace_id = $1 AND user_id = ANY($2::bigint[])"
            " ORDER BY type, id", w))
        self.groups_by_user = DataLoader(_grouped(
            "SELECT gm.user_id, g.* FROM group_members gm JOIN groups g ON g.id = gm.group_id"
            " WHERE gm.workspace_id = $1 AND gm.user_id = ANY($2::bigint[]) ORDER BY g.name", w))
        self.tag_values_by_user = DataLoader(_grouped(
            "SELECT ut.user_id, ut.\"values\", ut.source, ut.locked, ut.updated_at, t.key, t.name, t.type"
            " FROM user_tags ut JOIN tags t ON t.id = ut.tag_id"
            " WHERE ut.workspace_id = $1 AND ut.user_id = ANY($2::bigint[]) ORDER BY t.key", w))
        self.tags_by_group = DataLoader(_grouped(
            "SELECT * FROM tags WHERE workspace_id = $1 AND tag_group_id = ANY($2::bigint[]) ORDER BY key", w,
            key="tag_group_id"))
        self.member_count = DataLoader(self._member_counts)
        # The caller's own workspace row (settings), read once per request however many fields ask.
        self.workspace = DataLoader(_single("SELECT * FROM workspaces WHERE id = $1 AND id = ANY($2::bigint[])", w))
        self._workspace_id = w
        self._tag_defs: dict[str, dict[str, Any]] | None = None

    async def _member_counts(self, group_ids: Sequence[int]) -> list[int]:
        rows = await db.fetch(
            "SELECT group_id, count(*) AS n FROM group_members WHERE workspace_id = $1"
            " AND group_id = ANY($2::bigint[]) GROUP BY group_id", self._workspace_id, list(group_ids))
        counts = {r["group_id"]: r["n"] for r in rows}
        return [counts.get(g, 0) for g in group_ids]

    async def tag_definitions(self) -> dict[str, dict[str, Any]]:
        """All tags of the workspace by key (a workspace has tens to hundreds of them)."""
        if self._tag_defs is None:
            rows = await db.fetch("SELECT * FROM tags WHERE workspace_id = $1", self._workspace_id)
            self._tag_defs = {r["key"]: {**dict(r), "allowed_values": db.json_value(r["allowed_values"])}
                              for r in rows}
        return self._tag_defs

    @staticmethod
    def forget(loader: DataLoader, *keys: int) -> None:
        """Drop cached rows after a write (strawberry's clear() raises for keys never loaded)."""
        for key in keys:
            loader.cache_map.cache_map.pop(key, None)
