"""Runtime configuration, read once from the environment (prefix-free, 12-factor style)."""
from __future__ import annotations

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
    max_identities_per_type: int = 5
    db_pool_max: int = 10

    @property
    def production(self) -> bool:
        return self.environment == "production"


@lru_cache
def get_settings() -> Settings:
    return Settings()
