"""Where audiences are pushed: a Kafka topic or an ad platform's Data Bank.

A destination's `config` is what queries show; `secrets` (SASL password, Data Bank access key secret)
is read only by the push job and never leaves the server.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from tortoise import fields
from tortoise.fields.db_defaults import Now
from tortoise.models import Model

from models import db
from models.enums import DestinationKind
from models.errors import DomainError, NotFound


class Destination(Model):
    id = fields.BigIntField(primary_key=True)
    workspace = fields.ForeignKeyField("models.Workspace", related_name=False, on_delete=fields.CASCADE)
    workspace_id: int
    kind = fields.CharEnumField(DestinationKind, max_length=16)
    name = fields.CharField(max_length=200)
    config = fields.JSONField(default=dict)  # never holds secrets
    secrets = fields.JSONField(default=dict)  # never returned by queries
    created_at = fields.DatetimeField(db_default=Now(), auto_now_add=True)

    class Meta:
        table = "destinations"
        unique_together = (("workspace", "name"),)


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("NONE", "GZIP")  # lz4/zstd need extra wheels the image does not ship
DATABANK_IDENTITY_TYPES = ("PHONE", "EMAIL")
DATABANK_HASHES = ("MD5", "SHA256")
MAX_BOOTSTRAP_SERVERS = 20
MIN_BATCH, MAX_BATCH, DEFAULT_BATCH = 1, 10_000, 5_000
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$")


@dataclass
class KafkaConfig:
    bootstrap_servers: list[str]
    topic: str
    tls: bool = False
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    # aiokafka's idempotent producer (acks=all + sequence numbers). Off only for brokers that cannot
    # hand out producer ids to aiokafka (tansu 0.6 answers its InitProducerId v0 with an error).
    idempotence: bool = True
    compression: str = "NONE"


@dataclass
class DatabankConfig:
    endpoint: str
    access_key_id: str
    identity_type: str  # PHONE | EMAIL: which identifier is hashed and sent
    hash: str  # MD5 | SHA256
    batch_size: int = DEFAULT_BATCH


@dataclass
class NewDestination:
    """A validated destination, ready to store."""

    kind: DestinationKind
    name: str
    config: KafkaConfig | DatabankConfig
    secrets: dict[str, str] = field(default_factory=dict)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def clean_destination_name(name: str, field_: list[str]) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise DomainError("INVALID_NAME", "a destination name has 1 to 200 characters", field_)
    return name


def _valid_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    return bool(_HOST.match(host))


def validate_bootstrap_servers(servers: list[str], field_: list[str]) -> list[str]:
    """`host:port` entries (IPv6 as `[::1]:9092`); DomainError INVALID_BOOTSTRAP_SERVERS otherwise."""
    cleaned = [s.strip() for s in servers]
    if not 1 <= len(cleaned) <= MAX_BOOTSTRAP_SERVERS:
        raise DomainError("INVALID_BOOTSTRAP_SERVERS", f"give 1 to {MAX_BOOTSTRAP_SERVERS} bootstrap servers", field_)
    for server in cleaned:
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not _valid_host(host):
            raise DomainError("INVALID_BOOTSTRAP_SERVERS", f"'{server}' is not host:port", field_)
    return cleaned


def validate_topic(topic: str, field_: list[str]) -> str:
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise DomainError("INVALID_TOPIC", "a topic name has 1 to 249 letters, digits, '.', '_' or '-'", field_)
    return topic


def validate_endpoint(url: str, field_: list[str]) -> str:
    """An https URL; plain http only to a loopback host (a local receiver in development and tests)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise DomainError("INVALID_ENDPOINT", f"'{url}' is not a URL", field_) from None
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise DomainError("INVALID_ENDPOINT", "the endpoint must be an https:// URL without credentials", field_)
    if parts.scheme == "http" and not is_loopback(host):
        raise DomainError("INSECURE_ENDPOINT", "the endpoint must use https (http only to a loopback host)", field_)
    return url.strip()


def kafka_destination(name: str, servers: list[str], topic: str, *, tls: bool, sasl_mechanism: str | None,
                      sasl_username: str | None, sasl_password: str | None, idempotence: bool,
                      compression: str) -> NewDestination:
    base = ["kafka"]
    secrets: dict[str, str] = {}
    if sasl_mechanism is not None:
        if sasl_mechanism not in SASL_MECHANISMS:
            raise DomainError("INVALID_SASL", f"SASL mechanism must be one of {', '.join(SASL_MECHANISMS)}",
                              [*base, "sasl", "mechanism"])
        if not sasl_username or not sasl_password:
            raise DomainError("INVALID_SASL", "SASL needs a username and a password", [*base, "sasl"])
        secrets["sasl_password"] = sasl_password
    if compression not in COMPRESSIONS:
        raise DomainError("INVALID_COMPRESSION", f"compression is one of {', '.join(COMPRESSIONS)}",
                          [*base, "compression"])
    bootstrap = validate_bootstrap_servers(servers, [*base, "bootstrapServers"])
    if sasl_mechanism is not None and not tls and not all(
            is_loopback(server.rpartition(":")[0]) for server in bootstrap):
        # SASL_PLAINTEXT sends the password (PLAIN) or the login exchange unencrypted: only to a local broker.
        raise DomainError("TLS_REQUIRED", "SASL needs tls: true (without TLS only to a loopback host)",
                          [*base, "tls"])
    config = KafkaConfig(bootstrap_servers=bootstrap,
                         topic=validate_topic(topic, [*base, "topic"]), tls=tls, sasl_mechanism=sasl_mechanism,
                         sasl_username=sasl_username if sasl_mechanism else None, idempotence=idempotence,
                         compression=compression)
    return NewDestination(DestinationKind.KAFKA, clean_destination_name(name, ["name"]), config, secrets)


def databank_destination(name: str, endpoint: str, access_key_id: str, access_key_secret: str, *,
                         identity_type: str, hash_: str, batch_size: int) -> NewDestination:
    base = ["databank"]
    access_key_id = access_key_id.strip()
    if not 1 <= len(access_key_id) <= 200:
        raise DomainError("INVALID_ACCESS_KEY", "the access key id has 1 to 200 characters", [*base, "accessKeyId"])
    if len(access_key_secret) < 16:
        raise DomainError("INVALID_ACCESS_KEY", "the access key secret has at least 16 characters",
                          [*base, "accessKeySecret"])
    if identity_type not in DATABANK_IDENTITY_TYPES:
        raise DomainError("UNSUPPORTED_IDENTITY_TYPE", "a Data Bank matches PHONE or EMAIL identities",
                          [*base, "identityType"])
    if hash_ not in DATABANK_HASHES:
        raise DomainError("INVALID_HASH", "the hash is MD5 or SHA256", [*base, "hash"])
    if not MIN_BATCH <= batch_size <= MAX_BATCH:
        raise DomainError("INVALID_BATCH_SIZE", f"batchSize is {MIN_BATCH} to {MAX_BATCH}", [*base, "batchSize"])
    config = DatabankConfig(endpoint=validate_endpoint(endpoint, [*base, "endpoint"]), access_key_id=access_key_id,
                            identity_type=identity_type, hash=hash_, batch_size=batch_size)
    return NewDestination(DestinationKind.DATABANK, clean_destination_name(name, ["name"]), config,
                          {"access_key_secret": access_key_secret})


async def create_destination(workspace_id: int, new: NewDestination) -> asyncpg.Record:
    """Insert a destination; NAME_TAKEN when the workspace has one of that name."""
    try:
        return await db.fetchrow(
            "INSERT INTO destinations (workspace_id, kind, name, config, secrets, created_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, now()) RETURNING *",
            workspace_id, new.kind.value, new.name, orjson.dumps(asdict(new.config)).decode(),
            orjson.dumps(new.secrets).decode())
    except asyncpg.UniqueViolationError:
        raise DomainError("NAME_TAKEN", f"a destination named '{new.name}' exists", ["name"]) from None


async def destination_row(workspace_id: int, destination_id: int) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM destinations WHERE workspace_id = $1 AND id = $2",
                             workspace_id, destination_id)


async def list_destinations(workspace_id: int, *, after_id: int | None, limit: int) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM destinations WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                          workspace_id, after_id or 0, limit)


async def count_destinations(workspace_id: int) -> int:
    return await db.fetchval("SELECT count(*) FROM destinations WHERE workspace_id = $1", workspace_id)


async def delete_destination(workspace_id: int, destination_id: int) -> None:
    """NotFound for another workspace's; a running push keeps the settings it already read."""
    deleted = await db.fetchval("DELETE FROM destinations WHERE workspace_id = $1 AND id = $2 RETURNING id",
                                workspace_id, destination_id)
    if deleted is None:
        raise NotFound("destination", ["id"])


def kafka_config(row: Any) -> KafkaConfig:
    return KafkaConfig(**db.json_value(row["config"]))


def databank_config(row: Any) -> DatabankConfig:
    return DatabankConfig(**db.json_value(row["config"]))


def secrets_of(row: Any) -> dict[str, str]:
    return db.json_value(row["secrets"]) or {}
