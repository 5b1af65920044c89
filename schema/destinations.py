"""Destinations (a Kafka topic, a Data Bank) and audience pushes to them."""
from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any

import strawberry

from models import db, enums
from schema.common import Node, UserError, to_global_id
from schema.enums import IdentityType
from schema.jobs import Job

DestinationKind = strawberry.enum(enums.DestinationKind)


@strawberry.enum
class SaslMechanism(Enum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


@strawberry.enum
class KafkaCompression(Enum):
    NONE = "NONE"
    GZIP = "GZIP"


@strawberry.enum(description="How a Data Bank identifier is hashed (lower-case hex).")
class IdentifierHash(Enum):
    MD5 = "MD5"
    SHA256 = "SHA256"


@strawberry.type
class KafkaDestination:
    bootstrap_servers: list[str]
    topic: str
    tls: bool
    sasl_mechanism: SaslMechanism | None
    sasl_username: str | None
    idempotence: bool
    compression: KafkaCompression


@strawberry.type
class DatabankDestination:
    endpoint: str
    access_key_id: str
    identity_type: IdentityType = strawberry.field(description="PHONE (E.164) or EMAIL (lower-cased), hashed.")
    hash: IdentifierHash
    batch_size: int = strawberry.field(description="Users per signed request.")


@strawberry.type(description="Where audiences are pushed. Secrets (SASL password, access key secret) are "
                             "write-only: `hasSecret` tells whether one is stored.")
class Destination(Node):
    kind: DestinationKind
    name: str
    created_at: dt.datetime
    has_secret: bool
    kafka: KafkaDestination | None
    databank: DatabankDestination | None

    @classmethod
    def from_row(cls, row: Any) -> Destination:
        config = db.json_value(row["config"])
        kind = enums.DestinationKind(row["kind"])
        kafka = databank = None
        if kind is enums.DestinationKind.KAFKA:
            kafka = KafkaDestination(
                bootstrap_servers=config["bootstrap_servers"], topic=config["topic"], tls=config["tls"],
                sasl_mechanism=SaslMechanism(config["sasl_mechanism"]) if config["sasl_mechanism"] else None,
                sasl_username=config["sasl_username"], idempotence=config["idempotence"],
                compression=KafkaCompression(config["compression"]))
        else:
            databank = DatabankDestination(
                endpoint=config["endpoint"], access_key_id=config["access_key_id"],
                identity_type=IdentityType(config["identity_type"]), hash=IdentifierHash(config["hash"]),
                batch_size=config["batch_size"])
        return cls(id=to_global_id("Destination", row["id"]), kind=kind, name=row["name"],
                   created_at=row["created_at"], has_secret=bool(db.json_value(row["secrets"])),
                   kafka=kafka, databank=databank)


@strawberry.input
class KafkaSaslInput:
    mechanism: SaslMechanism
    username: str
    password: str


@strawberry.input
class KafkaDestinationInput:
    bootstrap_servers: list[str] = strawberry.field(description="host:port entries.")
    topic: str
    tls: bool = False
    sasl: KafkaSaslInput | None = None
    idempotence: bool = strawberry.field(default=True, description=(
        "Idempotent producer (acks=all either way). Turn off only for brokers that cannot give the "
        "producer an id (e.g. tansu 0.6)."))
    compression: KafkaCompression = KafkaCompression.NONE


@strawberry.input
class DatabankDestinationInput:
    endpoint: str = strawberry.field(description="https URL (http only to a loopback host).")
    access_key_id: str
    access_key_secret: str = strawberry.field(description="Signs every request (HMAC-SHA256); never returned.")
    identity_type: IdentityType
    hash: IdentifierHash
    batch_size: int = 5000


@strawberry.input(description="Exactly one of `kafka` or `databank`.")
class DestinationCreateInput:
    name: str
    kafka: KafkaDestinationInput | None = None
    databank: DatabankDestinationInput | None = None


@strawberry.type
class DestinationPayload:
    destination: Destination | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class DestinationDeleteInput:
    id: strawberry.ID


@strawberry.type
class DestinationDeletePayload:
    deleted_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AudiencePushInput:
    group_id: strawberry.ID
    destination_id: strawberry.ID
    fields: list[str] | None = strawberry.field(default=None, description=(
        "Profile fields for Kafka messages (`displayName`, `city`, …); all those the key may read when omitted."))
    identity_types: list[IdentityType] | None = strawberry.field(default=None, description=(
        "Identity types for Kafka messages; all those the key may read unmasked when omitted."))
    tag_keys: list[str] | None = strawberry.field(default=None, description=(
        "Tags for Kafka messages; all those the key may read when omitted."))


@strawberry.type
class AudiencePushPayload:
    job: Job | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
