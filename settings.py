"""Runtime configuration, read once from the environment (prefix-free, 12-factor style)."""
from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Unset URLs mean "start the embedded PostgreSQL / Redis under data_dir" (see embedded.py).
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".roster-data")

    environment: str = "development"  # "production" masks unexpected errors
    host: str = "127.0.0.1"
    port: int = 8000

    max_request_bytes: int = 10 * 1024 * 1024
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 5000
    default_phone_region: str = "US"
    db_pool_max: int = 10
    import_batch_size: int = 5000  # rows per committed batch (and per checkpoint) of an import
    import_parse_workers: int = 0  # processes parsing import rows ahead of the writer (0: one thread)
    push_batch_size: int = 10_000  # users read (one SQL statement) and produced per checkpoint of a Kafka push
    push_readers: int = 4  # Kafka push batches read at once, each on its own pooled connection
    job_stale_after_s: float = 120.0  # a RUNNING job silent this long lost its worker: the next attempt resumes it

    # Files: uploads, exports and error reports live under files_dir; download links are signed.
    max_upload_bytes: int = 200 * 1024 * 1024
    file_retention_s: int = 7 * 24 * 3600  # stored files expire (the worker purges them) after this
    download_token_ttl_s: int = 3600
    secret_key: str | None = None  # unset: a random key kept in data_dir/secret_key (survives restarts)

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def signing_key(self) -> bytes:
        """The key that signs download links: SECRET_KEY, else one generated once and kept under data_dir."""
        if self.secret_key:
            return self.secret_key.encode()
        return _persisted_secret(self.data_dir.resolve() / "secret_key")


@lru_cache
def _persisted_secret(path: Path) -> bytes:
    """Read the key at `path`, creating it first if needed; atomic, so an API and a worker agree on one key."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    try:
        os.link(temp, path)  # fails if another process created it first: then its key wins
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return bytes.fromhex(path.read_text().strip())


@lru_cache
def get_settings() -> Settings:
    return Settings()
