"""A realistic contacts CSV for the import benchmark: mixed phone formats and regions, emails, names,
two tags, a group column, ~5% rows repeating an earlier person, ~1% invalid rows."""
from __future__ import annotations

import csv
import random
from pathlib import Path

HEADER = ["姓名", "phone", "region", "email", "tier", "interests", "group"]
FIRST = ["Li", "Wang", "Zhang", "Liu", "Chen", "Yang", "Anna", "Ravi", "Maria", "John", "Aisha", "Kenji", "Lucas"]
LAST = ["Lei", "Fang", "Wei", "Smith", "Garcia", "Kumar", "Sato", "Silva", "Müller", "Okafor", "Nguyen"]
TIERS = ["gold", "silver", "bronze"]
INTERESTS = ["golf", "tea", "wine", "travel", "music"]
GROUPS = ["Spring leads", "Newsletter", "Store visitors", "Webinar"]


def _phone(rng: random.Random, n: int) -> tuple[str, str]:
    """(phone as typed, region column) in the formats people really type."""
    kind = rng.random()
    if kind < 0.35:  # China mobile: E.164, spaced national, or plain national
        nsn = f"13{n % 10}{n:08d}"[-11:]
        return rng.choice([f"+86{nsn}", f"{nsn[:3]} {nsn[3:7]} {nsn[7:]}", nsn]), "CN"
    if kind < 0.6:  # US: (415) 555-0123 style, or +1
        nsn = f"415{n % 8000000 + 2000000:07d}"
        return rng.choice([f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}", f"+1 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"]), "US"
    if kind < 0.8:  # UK mobile: 07700 900123 or +44 7700 900123
        nsn = f"7{n % 1000000000:09d}"
        return rng.choice([f"0{nsn[:4]} {nsn[4:]}", f"+44 {nsn[:4]} {nsn[4:]}"]), "GB"
    nsn = f"9{n % 1000000000:09d}"  # India mobile
    return rng.choice([f"+91 {nsn[:5]} {nsn[5:]}", f"0{nsn}"]), "IN"


def generate(path: Path, rows: int, seed: int = 42) -> None:
    rng = random.Random(seed)
    people: list[list[str]] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for n in range(rows):
            roll = rng.random()
            if roll < 0.05 and people:  # the same person again, maybe with a new email
                row = list(rng.choice(people))
                row[3] = row[3] if rng.random() < 0.5 else f"alt{n}@example.org"
            elif roll < 0.06:  # invalid: a phone that cannot be one, or an email without @
                row = [f"{rng.choice(FIRST)} Bad", "12345", "CN", f"broken{n}.example.com", "gold", "", ""]
            else:
                phone, region = _phone(rng, n)
                row = [f"{rng.choice(FIRST)} {rng.choice(LAST)}", phone, region, f"user{n}@example.com",
                       rng.choice(TIERS), ",".join(rng.sample(INTERESTS, rng.randint(0, 2))), rng.choice(GROUPS)]
                if len(people) < 50_000:
                    people.append(row)
            writer.writerow(row)
