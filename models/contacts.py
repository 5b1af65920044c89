"""`contactsUpsert`: the console's upload form (region + phone + name) as one set-based batch."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models import orphans
from models.errors import DomainError
from models.identities import InvalidIdentity, normalize_phone
from models.users import add_to_groups, existing_group_ids

MAX_CONTACTS = 1000


@dataclass
class ContactRow:
    phone: str
    name: str | None = None
    region: str | None = None


@dataclass
class UpsertResult:
    user_ids: list[int | None] = field(default_factory=list)  # per input row; None when it failed
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[DomainError] = field(default_factory=list)


async def upsert_contacts(workspace_id: int, rows: Sequence[ContactRow], *, overwrite: bool,
                          group_ids: Sequence[int], default_region: str, conn: Any) -> UpsertResult:
    """Create or update contacts by phone. Must run in a transaction.

    OVERWRITE replaces the name (unless edited by hand) and adds the groups; IGNORE leaves an
    existing contact exactly as it was. Invalid rows are reported and the rest proceed.
    """
    if not group_ids:
        raise DomainError("GROUP_REQUIRED", "a contact must be associated with at least one group", ["groupIds"])
    if len(rows) > MAX_CONTACTS:
        raise DomainError("TOO_MANY", f"at most {MAX_CONTACTS} contacts per call", ["contacts"])
    await existing_group_ids(workspace_id, group_ids, conn)
    result = UpsertResult(user_ids=[None] * len(rows))
    phones: dict[str, list[int]] = {}  # E.164 -> input rows carrying it
    for i, row in enumerate(rows):
        try:
            phone = normalize_phone(row.phone.strip(), row.region or default_region)
        except InvalidIdentity as exc:
            result.errors.append(DomainError(exc.code, str(exc), ["contacts", str(i), "phone"]))
            continue
        phones.setdefault(phone, []).append(i)
    if not phones:
        return result

    found = await conn.fetch(
        "SELECT i.value, u.id, u.locked_fields::jsonb ? 'display_name' AS name_locked FROM identities i"
        " JOIN users u ON u.id = i.user_id AND u.workspace_id = i.workspace_id"
        " WHERE i.workspace_id = $1 AND i.type = 'PHONE' AND i.channel = '' AND i.value = ANY($2::text[])"
        " FOR UPDATE OF u", workspace_id, list(phones))
    existing = {r["value"]: r for r in found}

    def last_name(indexes: list[int]) -> str | None:  # later rows of a batch win, as in a file
        names = [rows[i].name.strip() for i in indexes if rows[i].name and rows[i].name.strip()]
        return names[-1] if names else None

    new_phones = [p for p in phones if p not in existing]
    touched: list[int] = []
    if overwrite:
        updates = [(r["id"], last_name(phones[p])) for p, r in existing.items() if not r["name_locked"]]
        updates = [(uid, name) for uid, name in updates if name]
        if updates:
            await conn.execute(
                "UPDATE users u SET display_name = x.name, updated_at = now()"
                " FROM unnest($2::bigint[], $3::text[]) AS x(id, name)"
                " WHERE u.workspace_id = $1 AND u.id = x.id",
                workspace_id, [u for u, _ in updates], [n for _, n in updates])
        touched = [r["id"] for r in existing.values()]
        result.updated = len(existing)
    else:
        result.skipped = len(existing)
    for p, r in existing.items():
        for i in phones[p]:
            result.user_ids[i] = r["id"]

    if new_phones:
        ids = [r[0] for r in await conn.fetch(
            "SELECT nextval(pg_get_serial_sequence('users', 'id')) FROM generate_series(1, $1)", len(new_phones))]
        regions = [rows[phones[p][0]].region or default_region for p in new_phones]
        await orphans.release_stray_keys(workspace_id, [("PHONE", "", p) for p in new_phones], conn)
        await conn.execute(
            "INSERT INTO users (id, workspace_id, display_name, country, source)"
            " SELECT id, $1, name, upper(region), 'INTERNAL' FROM unnest($2::bigint[], $3::text[], $4::text[])"
            "   AS x(id, name, region)",
            workspace_id, ids, [last_name(phones[p]) for p in new_phones], regions)
        await conn.execute(
            "INSERT INTO identities (workspace_id, user_id, type, value, source)"
            " SELECT $1, id, 'PHONE', phone, 'contactsUpsert' FROM unnest($2::bigint[], $3::text[]) AS x(id, phone)",
            workspace_id, ids, new_phones)
        for p, uid in zip(new_phones, ids, strict=True):
            for i in phones[p]:
                result.user_ids[i] = uid
        touched += ids
        result.created = len(ids)
    await add_to_groups(workspace_id, touched, group_ids, conn)
    return result
