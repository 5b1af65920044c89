"""The import engine on one batch: ID mapping, duplicate policy, locks, groups, tags, conflicts."""
from __future__ import annotations

from typing import Any

from jobs.imports import ImportParams, write_batch
from models import db
from models.import_rows import ColumnRule, ParsedRow, RowError, RowSpec, parse_row
from schema.common import from_global_id
from tests import factories as f
from tests.conftest import Api

RULES = [ColumnRule(0, "NAME"), ColumnRule(1, "IDENTITY", identity_type="PHONE"),
         ColumnRule(2, "IDENTITY", identity_type="EMAIL"), ColumnRule(3, "PROFILE", field="city"),
         ColumnRule(4, "GROUP")]


async def run_batch(api: Api, rows: list[list[str]], *, overwrite: bool = True, group_ids: list[int] | None = None,
                    rules: list[ColumnRule] | None = None) -> tuple[dict[str, int], list[RowError]]:
    spec = RowSpec(rules or RULES, "CN", "crm.csv")
    parsed: list[ParsedRow] = []
    errors: list[RowError] = []
    for i, cells in enumerate(rows):
        result = parse_row(i, cells, spec)
        (errors if isinstance(result, RowError) else parsed).append(result)
    params = ImportParams(upload_file_id=0, rules=spec.rules, default_region="CN", overwrite=overwrite,
                          group_ids=group_ids or [], source="crm.csv")
    async with db.transaction() as conn:
        batch = await write_batch(api.workspace_id, parsed, params, conn, actor="test")
    return dict(batch.counts), sorted(errors + batch.errors, key=lambda e: e.index)


async def everyone(api: Api) -> dict[str, dict[str, Any]]:
    data = await api("{ users(first: 100) { edges { node { id displayName city source initialSource"
                     " identities { type value source } groups { name } tags { key values } } } } }")
    return {e["node"]["displayName"]: e["node"] for e in data["users"]["edges"]}


async def test_rows_become_users_with_identities_groups_and_source(api: Api) -> None:
    leads = await f.group(api, "Leads")
    counts, errors = await run_batch(api, [["Li", "13011110001", "li@x.com", "Beijing", "VIP"],
                                           ["Wang", "+1 415 555 2671", "", "NYC", ""]],
                                     group_ids=[from_global_id(leads["id"])[1]])
    assert errors == [] and counts == {"created": 2, "updated": 0}
    users = await everyone(api)
    assert users["Li"]["identities"] == [{"type": "EMAIL", "value": "li@x.com", "source": "crm.csv"},
                                         {"type": "PHONE", "value": "+8613011110001", "source": "crm.csv"}]
    assert [g["name"] for g in users["Li"]["groups"]] == ["Leads", "VIP"]
    assert users["Wang"]["source"] == "IMPORT" and users["Wang"]["initialSource"] == "crm.csv"


async def test_rows_sharing_an_identity_are_one_person_and_join_existing_users(api: Api) -> None:
    existing = await f.user(api, "old", phone="+8613011110001", displayName="Old")
    counts, errors = await run_batch(api, [["A", "13011110002", "a@x.com", "", ""],
                                           ["A2", "", "a@x.com", "Shanghai", ""],
                                           ["Old new name", "13011110001", "old@x.com", "", ""]])
    assert errors == [] and counts == {"created": 1, "updated": 1}
    users = await everyone(api)
    assert users["A2"]["city"] == "Shanghai" and len(users["A2"]["identities"]) == 2
    assert users["Old new name"]["id"] == existing["id"]


async def test_a_row_joining_two_users_merges_them(api: Api) -> None:
    await f.user(api, "p", phone="+8613011110001", displayName="Phone person")
    await f.user(api, "e", email="e@x.com", displayName="Email person", city="Hangzhou")
    counts, _ = await run_batch(api, [["", "13011110001", "e@x.com", "", ""]])
    assert counts["merged"] == 1
    users = await everyone(api)
    assert list(users) == ["Phone person"] and users["Phone person"]["city"] == "Hangzhou"


async def test_ignore_policy_leaves_existing_contacts_untouched(api: Api) -> None:
    await f.user(api, "p", phone="+8613011110001", displayName="Kept", city="Beijing")
    counts, _ = await run_batch(api, [["Changed", "13011110001", "new@x.com", "Paris", "G"]], overwrite=False)
    assert counts == {"skipped": 1, "created": 0, "updated": 0}
    user = (await everyone(api))["Kept"]
    assert user["city"] == "Beijing" and len(user["identities"]) == 1 and user["groups"] == []


async def test_overwrite_respects_fields_locked_by_hand(api: Api) -> None:
    user = await f.user(api, "p", phone="+8613011110001", displayName="Mine")
    await api.ok(f.UPDATE_USER, input={"id": user["id"], "city": "Locked city"})
    await run_batch(api, [["Theirs", "13011110001", "", "Import city", ""]])
    data = await api("query($id: ID!) { user(id: $id) { displayName city } }", id=user["id"])
    assert data["user"] == {"displayName": "Theirs", "city": "Locked city"}


async def test_bad_rows_fail_with_reasons_and_the_rest_proceed(api: Api) -> None:
    counts, errors = await run_batch(api, [["Bad", "12", "", "", ""], ["NoId", "", "", "", ""],
                                           ["Good", "13011110001", "", "", ""], ["BadMail", "", "no-at", "", ""]])
    assert counts["created"] == 1
    assert [(e.index, e.code) for e in errors] == [(0, "INVALID_PHONE"), (1, "MISSING_IDENTIFIER"),
                                                   (3, "INVALID_EMAIL")]


async def test_identity_limit_conflict_fails_the_rows_and_changes_nothing(api: Api) -> None:
    await f.user(api, "five", displayName="Five", identities=[{"type": "EMAIL", "value": f"e{i}@x.com"}
                                                              for i in range(5)])
    counts, errors = await run_batch(api, [["Five", "", "e0@x.com", "", ""], ["Five", "", "e9@x.com", "", ""]],
                                     rules=[ColumnRule(0, "NAME"), ColumnRule(2, "IDENTITY", identity_type="EMAIL")])
    # the second row is a different person (e9 is unknown), the first only re-states a known email
    assert errors == [] and counts == {"created": 1, "updated": 1}
    rows = [["Five", "e0@x.com,e8@x.com"]]
    counts, errors = await run_batch(api, rows, rules=[ColumnRule(0, "NAME"),
                                                       ColumnRule(1, "IDENTITY", identity_type="EMAIL")])
    assert [e.code for e in errors] == ["IDENTITY_LIMIT"]
    user = (await everyone(api))["Five"]
    assert len(user["identities"]) == 5


async def test_imported_tags_replace_values_unless_locked(api: Api) -> None:
    tier = await f.tag(api, "tier")
    tag = dict(await db.fetchrow("SELECT * FROM tags WHERE id = $1", from_global_id(tier["id"])[1]))
    tag["allowed_values"] = []
    rules = [ColumnRule(0, "NAME"), ColumnRule(1, "IDENTITY", identity_type="PHONE"), ColumnRule(2, "TAG", tag=tag)]
    locked = await f.user(api, "l", phone="+8613011110001", displayName="Locked",
                          tags=[{"key": "tier", "values": ["gold"]}])
    await run_batch(api, [["Locked", "13011110001", "bronze"], ["Free", "13011110002", "silver"]], rules=rules)
    users = await everyone(api)
    assert users["Locked"]["tags"] == [{"key": "tier", "values": ["gold"]}]
    assert users["Free"]["tags"] == [{"key": "tier", "values": ["silver"]}]
    assert locked["id"] == users["Locked"]["id"]


async def test_an_identity_taken_after_the_lookup_is_skipped_and_the_rest_written(api: Api, monkeypatch: Any) -> None:
    # A concurrent writer adds a key between the owners lookup and the COPY: the batch still commits.
    import jobs.import_plan

    await f.user(api, "taken", phone="+8613011110001", displayName="Taken")

    async def nobody_owns_anything(*_: Any) -> dict[Any, int]:
        return {}

    monkeypatch.setattr(jobs.import_plan, "owners_of", nobody_owns_anything)
    counts, errors = await run_batch(api, [["Late", "13011110001", "late@x.com", "", ""]])
    assert errors == [] and counts == {"created": 1, "updated": 0}
    users = await everyone(api)
    assert [i["value"] for i in users["Late"]["identities"]] == ["late@x.com"]
    assert [i["value"] for i in users["Taken"]["identities"]] == ["+8613011110001"]


def test_repeated_tag_and_group_cells_parse_the_same_every_time() -> None:
    tag = {"id": 7, "key": "tier", "type": "TEXT", "allowed_values": ["gold", "silver"]}
    spec = RowSpec([ColumnRule(0, "IDENTITY", identity_type="EMAIL"), ColumnRule(1, "TAG", tag=tag),
                    ColumnRule(2, "GROUP")], "CN", "crm.csv")
    rows = [parse_row(i, [f"u{i}@x.com", tier, "A, B；A"], spec)
            for i, tier in enumerate(["gold", "bad", "gold", "bad"])]
    assert [r.tags if isinstance(r, ParsedRow) else r.code for r in rows] == \
        [{7: ["gold"]}, "INVALID_TAG_VALUE", {7: ["gold"]}, "INVALID_TAG_VALUE"]
    assert rows[1].message == rows[3].message  # type: ignore[union-attr]
    assert rows[0].groups == rows[2].groups == ["A", "B", "A"]  # type: ignore[union-attr]


async def test_overwrite_writes_typed_profile_fields_of_existing_and_new_people(api: Api) -> None:
    rules = [ColumnRule(0, "NAME"), ColumnRule(1, "IDENTITY", identity_type="PHONE"),
             ColumnRule(2, "PROFILE", field="birthday"), ColumnRule(3, "PROFILE", field="level"),
             ColumnRule(4, "PROFILE", field="friending_allowed"), ColumnRule(5, "PROFILE", field="gender")]
    await f.user(api, "old", phone="+8613011110001", displayName="Old")
    counts, errors = await run_batch(api, [["Old \\ \"quoted\"", "13011110001", "1990/05/17", "3", "yes", "女"],
                                           ["New,\ttabbed", "13011110002", "2001-01-02", "7.0", "no", "m"]],
                                     rules=rules)
    assert errors == [] and counts == {"created": 1, "updated": 1}
    rows = await db.fetch("SELECT display_name, birthday::text, level, friending_allowed, gender FROM users"
                          " WHERE workspace_id = $1 ORDER BY id", api.workspace_id)
    assert [tuple(r.values()) for r in rows] == [('Old \\ "quoted"', "1990-05-17", 3, True, "FEMALE"),
                                                 ("New,\ttabbed", "2001-01-02", 7, False, "MALE")]


async def test_tag_values_with_quotes_and_backslashes_arrive_as_written(api: Api) -> None:
    tier = await f.tag(api, "note")
    tag = dict(await db.fetchrow("SELECT * FROM tags WHERE id = $1", from_global_id(tier["id"])[1]))
    tag["allowed_values"] = []
    rules = [ColumnRule(0, "IDENTITY", identity_type="PHONE"), ColumnRule(1, "TAG", tag=tag)]
    value = 'say "hi" \\ {NULL}'
    counts, errors = await run_batch(api, [["13011110001", value], ["13011110002", "NULL"]], rules=rules)
    assert errors == [] and counts["created"] == 2
    assert await db.fetchval("SELECT array_agg(\"values\"[1] ORDER BY user_id) FROM user_tags") == [value, "NULL"]
