"""exportStart and the workspace's export key."""
from __future__ import annotations

from enum import Enum

import strawberry

from schema.common import UserError
from schema.enums import IdentityType
from schema.jobs import Job
from schema.users import UserSelector


@strawberry.enum
class ExportEncryption(Enum):
    NONE = "NONE"  # the column holds the values as stored, labelled e.g. MOBILE(UNENCRYPTED)
    AES = "AES"  # each cell is AES-256-GCM encrypted with the workspace's export key, labelled e.g. MOBILE(AES)


@strawberry.enum
class ExportFormat(Enum):
    CSV_ZIP = "CSV_ZIP"  # a ZIP holding one UTF-8 CSV with a BOM


@strawberry.input(description="The columns of an export, in this order: fields, then identities, then tags. "
                              "A list left out exports none of its kind.")
class ExportColumnsInput:
    fields: list[str] | None = strawberry.field(
        default=None, description="User fields by their GraphQL name: id, username, displayName, city, createdAt…")
    identities: list[IdentityType] | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="One column per identity type; several identities of a type are joined by ';'.")
    tags: list[str] | None = strawberry.field(
        default=None, description="Tag keys; each column is headed by the tag's name.")


@strawberry.input
class IdentityEncryptionInput:
    type: IdentityType  # type: ignore[valid-type]
    encryption: ExportEncryption


@strawberry.input
class ExportStartInput:
    target: UserSelector | None = strawberry.field(
        default=None, description="Which users: `ids` or a `filter` (exactly the users `users(filter)` lists). "
                                  "Omitted: every user.")
    columns: ExportColumnsInput | None = strawberry.field(
        default=None, description="Omitted: every field, identity type and tag this key may read.")
    identity_encryption: list[IdentityEncryptionInput] = strawberry.field(
        default_factory=list, description="How each identity type's column is written (default NONE).")
    format: ExportFormat = ExportFormat.CSV_ZIP


@strawberry.type
class ExportStartPayload:
    job: Job | None = strawberry.field(default=None, description=(
        "The EXPORT job: its `resultFile { downloadUrl }` is the ZIP once it SUCCEEDED."))
    omitted_columns: list[str] = strawberry.field(default_factory=list, description=(
        "Columns left out because this key may not read them (also in the job's counts.omittedColumns)."))
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="The key that opens the AES columns of this workspace's exports.")
class WorkspaceExportKey:
    algorithm: str = strawberry.field(description="AES-256-GCM.")
    key: str = strawberry.field(description="The 32-byte key, base64.")
    cell_format: str = strawberry.field(description="How an encrypted cell is laid out.")
