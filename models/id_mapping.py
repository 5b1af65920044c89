"""ID mapping for a batch of parsed rows: who is new, who exists, who must be merged, what conflicts.

One lookup of all the batch's identities, then union-find in memory: rows sharing an identity (within
the batch, or through an existing user) are one person. The result is a plan the writer applies
set-based; nothing here touches the database.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from models.identities import IdentityKey
from models.import_rows import ParsedRow, RowError
from models.resolution import MAX_PER_TYPE


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Person:
    """The rows of a batch that are one person, and the existing users they match."""

    rows: list[ParsedRow]
    existing: list[int]  # user ids, oldest first is decided by the writer
    profile: dict[str, Any] = field(default_factory=dict)  # later rows win, as in the file
    identities: list[IdentityKey] = field(default_factory=list)
    tags: dict[int, list[str]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


@dataclass
class Plan:
    people: list[Person]
    errors: list[RowError]


def plan_batch(rows: list[ParsedRow], owners: dict[IdentityKey, int],
               identity_counts: dict[int, Counter[str]]) -> Plan:
    """Group rows into people. `owners`: existing owner of each known key; `identity_counts`: per
    existing user, how many identities of each type it has (for the per-type limit)."""
    uf = UnionFind(len(rows))
    first_row_of: dict[IdentityKey, int] = {}
    first_row_of_user: dict[int, int] = {}
    for i, row in enumerate(rows):
        for key in row.identities:
            if key in first_row_of:
                uf.union(first_row_of[key], i)
            else:
                first_row_of[key] = i
            owner = owners.get(key)
            if owner is not None:
                if owner in first_row_of_user:
                    uf.union(first_row_of_user[owner], i)
                else:
                    first_row_of_user[owner] = i
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        members[uf.find(i)].append(i)

    people, errors = [], []
    for indexes in members.values():
        group = [rows[i] for i in indexes]
        person = _combine(group, owners)
        over = _over_limit(person, owners, identity_counts)
        if over:
            errors += [RowError(r.index, "IDENTITY_LIMIT", f"the user would have more than {MAX_PER_TYPE} "
                                f"identities of type {', '.join(over)}") for r in group]
            continue
        people.append(person)
    return Plan(people, errors)


def _combine(group: list[ParsedRow], owners: dict[IdentityKey, int]) -> Person:
    existing = sorted({owners[k] for r in group for k in r.identities if k in owners})
    person = Person(rows=group, existing=existing)
    for row in group:
        person.profile.update(row.profile)
        person.identities += row.identities
        person.tags.update(row.tags)
        person.groups += row.groups
    person.identities = list(dict.fromkeys(person.identities))
    person.groups = list(dict.fromkeys(person.groups))
    return person


def _over_limit(person: Person, owners: dict[IdentityKey, int], counts: dict[int, Counter[str]]) -> list[str]:
    if not person.existing and len(person.identities) <= MAX_PER_TYPE:  # the common case: nothing to count
        return []
    total: Counter[str] = Counter()
    for user_id in person.existing:
        total.update(counts.get(user_id, Counter()))
    total.update(k.type.value for k in person.identities if k not in owners)
    return sorted(t for t, n in total.items() if n > MAX_PER_TYPE)
