"""Batch operations at scale, through the GraphQL API: usersTag and groupsAssociate by a filter matching
~1M and ~100k users, groupsChange by ids for 10k users. Each run uses a fresh tag and fresh groups and
deletes them afterwards, so runs are repeatable.

    python bench/batch.py [--users 1000000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed import api_key, database_url, free_port, seed, wait_ready  # noqa: E402
from schema.common import to_global_id  # noqa: E402

ALL = {"memberLevels": ["gold", "silver", "bronze"]}  # every seeded user, through a real condition
TENTH = {"tags": [{"key": "city_code", "op": "IN", "values": [f"C{i}" for i in range(30)]}]}  # 30 of 300 codes


class Api:
    def __init__(self, client: httpx.AsyncClient, url: str, token: str) -> None:
        self.client, self.url, self.headers = client, url, {"Authorization": f"Bearer {token}"}

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        body = (await self.client.post(self.url, json={"query": query, "variables": variables},
                                       headers=self.headers)).json()
        if "errors" in body:
            raise RuntimeError(body["errors"])
        (payload,) = body["data"].values()
        if payload.get("userErrors"):
            raise RuntimeError(payload["userErrors"])
        return payload


async def timed(name: str, api: Api, query: str, **variables: Any) -> dict[str, Any]:
    started = time.perf_counter()
    payload = await api(query, **variables)
    seconds = time.perf_counter() - started
    affected = payload.get("usersAffected")
    print(f"{name:<44} {seconds:6.2f} s   users affected {affected:>9,}")
    return payload


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    args = parser.parse_args()
    url = await database_url()
    await seed(url, args.users)
    token = await api_key(url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "ENVIRONMENT": "production", "PORT": str(port)}
    redis = None
    if not env.get("REDIS_URL"):
        import embedded

        redis = embedded.EmbeddedRedis(Path("/tmp/roster-bench/redis"))
        env["REDIS_URL"] = redis.start()
    server = subprocess.Popen([str(Path(sys.executable).with_name("roster")), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            await wait_ready(client, base)
            api = Api(client, f"{base}/graphql", token)
            stamp = str(int(time.time()))
            tag = (await api("mutation($k: String!) { tagCreate(input: {key: $k, name: $k, type: TEXT}) {"
                             " tag { id key } userErrors { code message } } }", k=f"bench_{stamp}"))["tag"]
            groups = [(await api("mutation($n: String!) { groupCreate(input: {name: $n}) { group { id }"
                                 " userErrors { code message } } }", n=f"Bench {stamp} {i}"))["group"]["id"]
                      for i in range(3)]
            print(f"batch operations at {args.users:,} users")
            tag_q = ("mutation($t: UserSelector!, $k: String!, $v: [String!]!) { usersTag(input: {target: $t, key: $k,"
                     " values: $v, conflictPolicy: OVERWRITE}) { usersAffected userErrors { code message } } }")
            assoc_q = ("mutation($t: UserSelector!, $g: [ID!]!) { groupsAssociate(input: {target: $t, groupIds: $g})"
                       " { usersAffected userErrors { code message } } }")
            change_q = ("mutation($t: UserSelector!, $g: [ID!]!, $from: ID) { groupsChange(input: {target: $t,"
                        " toGroupIds: $g, fromGroupId: $from}) { usersAffected userErrors { code message } } }")
            await timed("usersTag, filter ~100k users", api, tag_q, t={"filter": TENTH}, k=tag["key"], v=["x"])
            await timed("usersTag, filter ~1M users", api, tag_q, t={"filter": ALL}, k=tag["key"], v=["x"])
            await timed("usersTag, the same 1M users, another value", api, tag_q, t={"filter": ALL}, k=tag["key"],
                        v=["y"])
            await timed("groupsAssociate APPEND, filter ~100k users", api, assoc_q, t={"filter": TENTH}, g=[groups[0]])
            await timed("groupsAssociate APPEND, filter ~1M users", api, assoc_q, t={"filter": ALL}, g=[groups[1]])
            ids = [to_global_id("User", i) for i in range(1, min(args.users, 10_000) + 1)]
            await timed("groupsChange by 10k ids", api, change_q, t={"ids": ids}, g=[groups[2]], **{"from": groups[1]})
            for group in groups:  # leave the seeded data as it was
                await api("mutation($id: ID!) { groupDelete(input: {id: $id}) { userErrors { code message } } }",
                          id=group)
            await api("mutation($id: ID!) { tagDelete(input: {id: $id}) { userErrors { code message } } }",
                      id=tag["id"])
            print("(goal: <= 5 s for 1M users)")
    finally:
        server.terminate()
        server.wait(timeout=10)
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    asyncio.run(main())
