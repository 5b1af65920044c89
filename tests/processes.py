"""Running `roster` subprocesses from tests: where the command is, a loopback port, clean stops."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ROSTER_SCRIPT = Path(sys.executable).parent / "roster"
# The installed console script when present (tests the entry point too), else the module.
ROSTER = [str(ROSTER_SCRIPT)] if ROSTER_SCRIPT.exists() else [sys.executable, "-m", "cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def roster_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(data_dir),
            "ENVIRONMENT": "test"}


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def wait_until_healthy(base_url: str, proc: subprocess.Popen[bytes], log: Path, limit: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        while True:
            assert proc.poll() is None, f"server exited early ({proc.returncode}):\n{log.read_text()}"
            try:
                if (await http.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"no healthy server in {limit}s:\n{log.read_text()}"
            await asyncio.sleep(0.2)
