"""Uploads and imports: uploadCreate, importPreview (and the inputs importStart shares with it)."""
from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload

from models import import_mapping
from models.import_preview import Preview
from schema.common import UserError, camel
from schema.enums import DuplicatePolicy, IdentityType
from schema.groups import Group, NewGroupInput
from schema.jobs import File, Job

ImportTarget = strawberry.enum(import_mapping.ImportTarget, description=(
    "What a file column fills: NAME (display name), FIRST_NAME, LAST_NAME, USERNAME, PROFILE (+ field), "
    "IDENTITY (+ identityType), TAG (+ tagKey), GROUP (group names), REGION (the phone region of the row), IGNORE."))
ColumnDataType = strawberry.enum(import_mapping.DataType, name="ColumnDataType",
                                 description="The kind of values most of a column holds.")


@strawberry.input(description="What one file column (0-based `column`) fills.")
class ColumnMappingInput:
    column: int
    target: ImportTarget  # type: ignore[valid-type]
    field: str | None = strawberry.field(default=None, description="PROFILE: the profile field, e.g. memberLevel.")
    identity_type: IdentityType | None = None  # type: ignore[valid-type]
    tag_key: str | None = strawberry.field(default=None, description="TAG: the key of an existing tag.")
    region: str | None = strawberry.field(
        default=None, description="IDENTITY (phones): the region of every number of this column, e.g. CN.")


@strawberry.type(description="What one file column fills.")
class ColumnMapping:
    column: int
    target: ImportTarget  # type: ignore[valid-type]
    field: str | None
    identity_type: IdentityType | None  # type: ignore[valid-type]
    tag_key: str | None
    region: str | None

    @classmethod
    def of(cls, m: import_mapping.ColumnMapping) -> ColumnMapping:
        return cls(column=m.column, target=m.target, field=camel(m.field) if m.field else None,
                   identity_type=m.identity_type, tag_key=m.tag_key, region=m.region)


@strawberry.type
class ImportColumn:
    index: int
    name: str = strawberry.field(description="The header.")
    suggested: ColumnMapping = strawberry.field(description="What the header (or the values) suggest.")
    detected_type: ColumnDataType  # type: ignore[valid-type]
    sample_values: list[str] = strawberry.field(description="The first few non-empty values.")


@strawberry.type(description="One mapped cell as the import would store it.")
class ImportPreviewCell:
    column: int
    target: ImportTarget  # type: ignore[valid-type]
    value: str | None = strawberry.field(description="Normalised (E.164 phone, lower-case email...); null if "
                                                     "empty or invalid.")
    code: str | None = strawberry.field(description="Why the value is invalid (INVALID_PHONE, INVALID_EMAIL...).")
    message: str | None


@strawberry.type
class ImportPreviewRow:
    row: int = strawberry.field(description="The row's number in the file (the header is row 1).")
    values: list[str] = strawberry.field(description="The raw cells, one per column.")
    cells: list[ImportPreviewCell] = strawberry.field(description="One per mapped (not ignored) column.")
    valid: bool = strawberry.field(description="Whether the import would take the row.")


@strawberry.type(description="A row the import would reject, and why.")
class ImportProblem:
    row: int
    column: int | None = strawberry.field(description="Null when the problem is the whole row's.")
    code: str
    message: str


@strawberry.type
class ImportPreview:
    format: str = strawberry.field(description="CSV or XLSX.")
    encoding: str | None = strawberry.field(description="CSV: the detected text encoding.")
    delimiter: str | None = strawberry.field(description="CSV: the detected delimiter.")
    columns: list[ImportColumn]
    mapping: list[ColumnMapping] = strawberry.field(description="The mapping used: the given one, else the "
                                                                "suggested one.")
    rows: list[ImportPreviewRow] = strawberry.field(description="The first rows, parsed under the mapping.")
    problems: list[ImportProblem] = strawberry.field(description="The problems of those rows.")
    total_rows_estimate: int | None

    @classmethod
    def of(cls, p: Preview) -> ImportPreview:
        return cls(
            format=p.format, encoding=p.encoding, delimiter=p.delimiter,
            columns=[ImportColumn(index=c.index, name=c.name, suggested=ColumnMapping.of(c.suggested),
                                  detected_type=c.detected_type, sample_values=c.sample_values) for c in p.columns],
            mapping=[ColumnMapping.of(m) for m in p.mapping],
            rows=[ImportPreviewRow(row=r.row, values=r.values, valid=r.valid, cells=[
                ImportPreviewCell(column=c.column, target=c.target, value=c.value, code=c.code, message=c.message)
                for c in r.cells]) for r in p.rows],
            problems=[ImportProblem(row=x.row, column=x.column, code=x.code, message=x.message) for x in p.problems],
            total_rows_estimate=p.total_rows_estimate)


@strawberry.input
class ImportPreviewInput:
    upload_id: strawberry.ID
    default_region: str | None = strawberry.field(
        default=None, description="The region of phone numbers written without a country code (default: the "
                                  "workspace's).")
    mapping: list[ColumnMappingInput] | None = strawberry.field(
        default=None, description="Omit to preview under the suggested mapping.")


@strawberry.type
class ImportPreviewPayload:
    preview: ImportPreview | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UploadCreateInput:
    file: Upload


@strawberry.type
class UploadCreatePayload:
    upload: File | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ImportStartInput:
    upload_id: strawberry.ID
    mapping: list[ColumnMappingInput] | None = strawberry.field(
        default=None, description="One entry per column of the file (IGNORE drops a column). Default: the "
        "suggested mapping, accepted only when it leaves no column unmapped.")
    default_region: str | None = strawberry.field(
        default=None, description="The region of phones written without a country code (default: the workspace's).")
    duplicate_policy: DuplicatePolicy = strawberry.field(  # type: ignore[valid-type]
        default=DuplicatePolicy.OVERWRITE,
        description="OVERWRITE: existing contacts take the file's values (except fields edited by hand); "
        "IGNORE: existing contacts stay exactly as they are.")
    group_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    new_group: NewGroupInput | None = strawberry.field(
        default=None, description="A group the import creates and puts every imported contact in.")
    source: str | None = strawberry.field(
        default=None, description="The source name recorded as initialSource and identity source (default: the "
        "file name).")


@strawberry.type
class ImportStartPayload:
    job: Job | None = None
    group: Group | None = strawberry.field(default=None, description="The group created by `newGroup`.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)
