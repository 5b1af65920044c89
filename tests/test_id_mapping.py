"""plan_batch (union-find, shared containers for one-row people) against a plain reference on random batches."""
from __future__ import annotations

import random
from collections import Counter
from typing import Any

from models.id_mapping import plan_batch
from models.import_rows import Key, ParsedRow
from models.resolution import MAX_PER_TYPE


def reference(rows: list[ParsedRow], owners: dict[Key, int], counts: dict[int, Counter[str]]) -> list[Any]:
    """People as connected components of rows sharing a key or an owner, described the slow, obvious way."""
    def links(group: list[ParsedRow]) -> set[Any]:
        keys = {k for r in group for k in r.identities}
        return keys | {owners[k] for k in keys if k in owners}

    people: list[list[ParsedRow]] = []
    for row in rows:
        touching = [p for p in people if links(p) & links([row])]
        merged = sorted([r for p in touching for r in p] + [row], key=lambda r: r.index)
        people = [p for p in people if p not in touching] + [merged]
    out = []
    for group in sorted(people, key=lambda p: p[0].index):
        profile: dict[str, Any] = {}
        tags: dict[int, list[str]] = {}
        for r in group:
            profile.update(r.profile)
            tags.update(r.tags)
        identities = list(dict.fromkeys(k for r in group for k in r.identities))
        existing = sorted({owners[k] for k in identities if k in owners})
        total: Counter[str] = Counter()
        for user_id in existing:
            total.update(counts.get(user_id, Counter()))
        total.update(k[0] for k in identities if k not in owners)
        over = any(n > MAX_PER_TYPE for n in total.values())
        out.append(("error" if over else "person", [r.index for r in group], existing, profile, identities, tags,
                    list(dict.fromkeys(g for r in group for g in r.groups))))
    return out


def random_batch(rng: random.Random) -> tuple[list[ParsedRow], dict[Key, int], dict[int, Counter[str]]]:
    pool: list[Key] = [("EMAIL" if i % 2 else "PHONE", "", f"v{i}", "NONE") for i in range(rng.randint(5, 60))]
    rows = [ParsedRow(i, {"display_name": f"n{i}", **({"city": f"c{i}"} if rng.random() < 0.5 else {})},
                      list(dict.fromkeys(rng.sample(pool, rng.randint(1, 4)))),
                      {rng.randint(1, 3): [f"t{i}"]}, rng.sample(["A", "B", "A", "C"], rng.randint(0, 3)))
            for i in range(rng.randint(1, 40))]
    owners = {k: rng.randint(1, 6) for k in pool if rng.random() < 0.2}
    counts = {u: Counter({"EMAIL": rng.randint(0, 5), "PHONE": rng.randint(0, 5)}) for u in range(1, 7)}
    return rows, owners, counts


def test_plan_batch_matches_the_plain_reference_on_random_batches() -> None:
    rng = random.Random(3)
    for _ in range(500):
        rows, owners, counts = random_batch(rng)
        plan = plan_batch(rows, owners, counts)
        got = [("person", [r.index for r in p.rows], p.existing, p.profile, p.identities, p.tags, p.groups)
               for p in plan.people]
        expected = reference(rows, owners, counts)
        assert got == [e for e in expected if e[0] == "person"]
        assert sorted(e.index for e in plan.errors) == sorted(i for e in expected if e[0] == "error" for i in e[1])
