"""ID mapping for a batch of parsed rows: who is new, who exists, who must be merged, what conflicts.

One lookup of all the batch's identities, then union-find in memory: rows sharing an identity (within
the batch, or through an existing user) are one person. The result is a plan the writer applies
set-based; nothing here touches the database.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from models.import_rows import Key, ParsedRow, RowError
from models.resolution import MAX_PER_TYPE


@dataclass(slots=True)
class Person:
    """The rows of a batch that are one person, and the existing users they match.

    A person of one row shares that row's profile, identities and tags (nothing changes them later).
    """

    rows: list[ParsedRow]
    existing: list[int]  # user ids, oldest first is decided by the writer
    profile: dict[str, Any]  # later rows win, as in the file
    identities: list[Key]
    tags: dict[int, list[str]]
    groups: list[str]


@dataclass
class Plan:
    people: list[Person]
    errors: list[RowError]


def plan_batch(rows: list[ParsedRow], owners: dict[Key, int], identity_counts: dict[int, Counter[str]]) -> Plan:
    """Group rows into people. `owners`: existing owner of each known key; `identity_counts`: per
    existing user, how many identities of each type it has (for the per-type limit)."""
    parent = list(range(len(rows)))  # union-find over row positions; a set's root is its first row

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_row_of: dict[Key, int] = {}
    first_row_of_user: dict[int, int] = {}
    joined = False  # most batches are mostly new people, each on their own row: then no grouping is needed
    for i, row in enumerate(rows):
        for key in row.identities:
            first = first_row_of.setdefault(key, i)
            if first != i:
                union(first, i)
                joined = True
            if owners and (owner := owners.get(key)) is not None:
                first = first_row_of_user.setdefault(owner, i)
                if first != i:
                    union(first, i)
                    joined = True
    if joined:
        members: dict[int, list[ParsedRow]] = {}
        for i, row in enumerate(rows):
            members.setdefault(find(i), []).append(row)
        groups: Iterable[list[ParsedRow]] = members.values()
    else:
        groups = ([row] for row in rows)

    people, errors = [], []
    for group in groups:
        person = _combine(group, owners)
        if person.existing or len(person.identities) > MAX_PER_TYPE:  # else nothing to count
            over = _over_limit(person, owners, identity_counts)
            if over:
                errors += [RowError(r.index, "IDENTITY_LIMIT", f"the user would have more than {MAX_PER_TYPE} "
                                    f"identities of type {', '.join(over)}") for r in group]
                continue
        people.append(person)
    return Plan(people, errors)


def _combine(group: list[ParsedRow], owners: dict[Key, int]) -> Person:
    if len(group) == 1:  # most people: one row, matching nobody
        row = group[0]
        existing = [owners[k] for k in row.identities if k in owners] if owners else []
        if len(existing) > 1:
            existing = sorted(set(existing))
        groups = row.groups if len(row.groups) < 2 else list(dict.fromkeys(row.groups))
        return Person(group, existing, row.profile, row.identities, row.tags, groups)
    existing = sorted({owners[k] for r in group for k in r.identities if k in owners}) if owners else []
    person = Person(group, existing, {}, [], {}, [])
    for row in group:
        person.profile.update(row.profile)
        person.identities += row.identities
        person.tags.update(row.tags)
        person.groups += row.groups
    person.identities = list(dict.fromkeys(person.identities))
    person.groups = list(dict.fromkeys(person.groups))
    return person


def _over_limit(person: Person, owners: dict[Key, int], counts: dict[int, Counter[str]]) -> list[str]:
    total: Counter[str] = Counter()
    for user_id in person.existing:
        total.update(counts.get(user_id, Counter()))
    total.update(k[0] for k in person.identities if k not in owners)
    return sorted(t for t, n in total.items() if n > MAX_PER_TYPE)
