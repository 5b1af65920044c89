"""Column mappings of an import: suggestions from header names and values, and their validation.

A mapping says, per file column, what it fills: the display name, a profile field, an identity, a tag,
a group, the row's phone region, or nothing. Pure Python, shared by importPreview and importStart.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import phonenumbers

from models.enums import IdentityType
from models.errors import DomainError
from models.import_rows import ColumnRule
from models.profile import PROFILE_FIELDS


class ImportTarget(str, Enum):
    NAME = "NAME"  # display name
    FIRST_NAME = "FIRST_NAME"
    LAST_NAME = "LAST_NAME"
    USERNAME = "USERNAME"
    PROFILE = "PROFILE"  # + field (a users column, e.g. "city")
    IDENTITY = "IDENTITY"  # + identity_type (and an optional fixed region for phones)
    TAG = "TAG"  # + tag_key of an existing tag
    GROUP = "GROUP"  # group names (comma separated); missing groups are created
    REGION = "REGION"  # the phone region (CN, US, ...) of this row's phone numbers
    IGNORE = "IGNORE"


class DataType(str, Enum):
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    DATE = "DATE"
    NUMBER = "NUMBER"
    BOOLEAN = "BOOLEAN"
    TEXT = "TEXT"


@dataclass(frozen=True)
class ColumnMapping:
    column: int
    target: ImportTarget
    field: str | None = None
    identity_type: IdentityType | None = None
    tag_key: str | None = None
    region: str | None = None


def _profile(name: str) -> tuple[ImportTarget, str | None, IdentityType | None]:
    return ImportTarget.PROFILE, name, None


def _identity(kind: IdentityType) -> tuple[ImportTarget, str | None, IdentityType | None]:
    return ImportTarget.IDENTITY, None, kind


def _plain(target: ImportTarget) -> tuple[ImportTarget, str | None, IdentityType | None]:
    return target, None, None


# Header words (normalised by _normal: NFKC, lower case, no spaces/punctuation, no "(...)" notes).
_ALIASES: dict[tuple[ImportTarget, str | None, IdentityType | None], tuple[str, ...]] = {
    _plain(ImportTarget.NAME): ("name", "fullname", "displayname", "contactname", "customername", "姓名", "名字",
                                "全名", "联系人", "联系人姓名", "客户姓名", "客户名称", "用户姓名"),
    _plain(ImportTarget.FIRST_NAME): ("firstname", "givenname", "forename", "名"),
    _plain(ImportTarget.LAST_NAME): ("lastname", "surname", "familyname", "姓"),
    _plain(ImportTarget.USERNAME): ("username", "userid", "login", "用户名", "用户id", "账号", "帐号"),
    _plain(ImportTarget.GROUP): ("group", "groups", "groupname", "usergroup", "分组", "群组", "用户组", "组"),
    _plain(ImportTarget.REGION): ("region", "regioncode", "countrycode", "phoneregion", "区号", "国家代码",
                                  "国家区号", "地区代码", "国家地区代码"),
    _identity(IdentityType.PHONE): ("phone", "phonenumber", "phoneno", "mobile", "mobilephone", "mobilenumber",
                                    "cellphone", "cell", "tel", "telephone", "手机号", "手机", "电话", "联系电话",
                                    "手机号码", "电话号码", "移动电话"),
    _identity(IdentityType.EMAIL): ("email", "emailaddress", "mail", "邮箱", "电子邮件", "电子邮箱", "邮件",
                                    "邮箱地址"),
    _identity(IdentityType.WHATSAPP): ("whatsapp", "whatsappnumber", "whatsappphone", "wa"),
    _identity(IdentityType.INSTAGRAM): ("instagram", "instagramhandle", "ins", "ig", "insta"),
    _identity(IdentityType.EXTERNAL_ID): ("externalid",),
    _profile("nickname"): ("nickname", "nick", "昵称"),
    _profile("gender"): ("gender", "sex", "性别"),
    _profile("birthday"): ("birthday", "birthdate", "dateofbirth", "dob", "生日", "出生日期"),
    _profile("city"): ("city", "城市"),
    _profile("country"): ("country", "国家", "国家地区"),
    _profile("language"): ("language", "lang", "语言"),
    _profile("member_level"): ("memberlevel", "membershiplevel", "membership", "会员等级", "会员级别"),
    _profile("level"): ("level", "等级"),
    _profile("avatar_url"): ("avatar", "avatarurl", "头像"),
    _profile("status_message"): ("statusmessage", "whatsup", "个性签名", "签名"),
    _profile("role"): ("role", "角色"),
    _profile("primary_channel"): ("primarychannel", "首选渠道"),
}
_BY_WORD = {word: target for target, words in _ALIASES.items() for word in words}
_TAG_PREFIXES = ("tag:", "标签:")

# The template's headers: one per suggestion, each mapped back exactly by suggest_mapping.
TEMPLATE_HEADERS = ("name", "phone", "region", "email", "username", "nickname", "gender", "birthday", "city",
                    "country", "language", "member_level", "group")
TEMPLATE_EXAMPLE = ("Li Lei", "130 1111 2222", "CN", "li.lei@example.com", "li.lei", "Lei", "MALE", "1990-05-01",
                    "Hangzhou", "China", "zh-CN", "GOLD", "VIP")


def _normal(header: str) -> str:
    text = unicodedata.normalize("NFKC", header).lower().strip()
    text = re.sub(r"\(.*?\)|\[.*?\]", "", text)  # "Phone (with country code)", "手机号（必填）" after NFKC
    return re.sub(r"[\s_\-./*#:：、]", "", text)


def suggest_mapping(columns: Sequence[str], sample_rows: Sequence[Sequence[str]] | None = None,
                    tags: Mapping[str, Any] | None = None) -> list[ColumnMapping]:
    """One suggestion per column, from its header (English or Chinese), else from its values.

    "tag:<key>" headers, and headers equal to an existing tag's key or name (when `tags` is given),
    suggest that tag. Columns nothing is known about suggest IGNORE.
    """
    tag_names = {_normal(str(t.get("name") or "")): key for key, t in (tags or {}).items()}
    tag_names.update({_normal(key): key for key in (tags or {})})
    suggestions = []
    for index, header in enumerate(columns):
        suggestion = _by_header(index, header, tags, tag_names)
        if suggestion is None and sample_rows:
            suggestion = _by_values(index, [r[index] for r in sample_rows if index < len(r)])
        suggestions.append(suggestion or ColumnMapping(index, ImportTarget.IGNORE))
    return suggestions


def _by_header(index: int, header: str, tags: Mapping[str, Any] | None,
               tag_names: Mapping[str, str]) -> ColumnMapping | None:
    lowered = unicodedata.normalize("NFKC", header).strip().lower()
    for prefix in _TAG_PREFIXES:
        if lowered.startswith(prefix):
            key = unicodedata.normalize("NFKC", header).strip()[len(prefix):].strip()
            if key and (tags is None or key in tags):
                return ColumnMapping(index, ImportTarget.TAG, tag_key=key)
            return None
    word = _normal(header)
    if word in _BY_WORD:
        target, field, identity_type = _BY_WORD[word]
        return ColumnMapping(index, target, field=field, identity_type=identity_type)
    if word in tag_names:
        return ColumnMapping(index, ImportTarget.TAG, tag_key=tag_names[word])
    return None


def _by_values(index: int, values: Sequence[str]) -> ColumnMapping | None:
    detected = detect_type(values)
    if detected is DataType.PHONE:
        return ColumnMapping(index, ImportTarget.IDENTITY, identity_type=IdentityType.PHONE)
    if detected is DataType.EMAIL:
        return ColumnMapping(index, ImportTarget.IDENTITY, identity_type=IdentityType.EMAIL)
    return None


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$"
                   r"|^\d{1,2}/\d{1,2}/\d{4}$")
_PHONE = re.compile(r"^\+?[\d\s\-().]{7,24}$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_BOOLEAN = {"true", "false", "yes", "no", "y", "n", "是", "否"}


def detect_type(values: Sequence[str], threshold: float = 0.8) -> DataType:
    """The type most (80 %) of the non-empty values have, in order EMAIL, BOOLEAN, DATE, PHONE, NUMBER; else TEXT.

    A phone is 7–15 digits written with a leading "+" or separators, or 8–15 plain digits.
    """
    filled = [v.strip() for v in values if v and v.strip()]
    if not filled:
        return DataType.TEXT
    for data_type, test in ((DataType.EMAIL, lambda v: bool(_EMAIL.match(v))),
                            (DataType.BOOLEAN, lambda v: v.lower() in _BOOLEAN),
                            (DataType.DATE, lambda v: bool(_DATE.match(v))),
                            (DataType.PHONE, _looks_like_phone),
                            (DataType.NUMBER, lambda v: bool(_NUMBER.match(v)))):
        if sum(1 for v in filled if test(v)) >= threshold * len(filled):
            return data_type
    return DataType.TEXT


def _looks_like_phone(value: str) -> bool:
    if not _PHONE.match(value):
        return False
    digits = sum(c.isdigit() for c in value)
    if value.startswith("+") or any(c in value for c in " -()"):
        return 7 <= digits <= 15 and "." not in value
    return value.isdigit() and 8 <= digits <= 15


# Validation

def validate_mapping(mapping: Sequence[ColumnMapping], columns: Sequence[str],
                     tag_definitions: Mapping[str, Any]) -> list[DomainError]:
    """Every problem of a mapping (field paths are relative to the input: ["mapping", "<i>", ...])."""
    errors: list[DomainError] = []
    for i, m in enumerate(mapping):
        def at(name: str, i: int = i) -> list[str]:
            return ["mapping", str(i), name]

        if not 0 <= m.column < len(columns):
            errors.append(DomainError("INVALID_COLUMN", f"column {m.column} does not exist: the file has "
                                      f"columns 0 to {len(columns) - 1}", at("column")))
        if m.target is ImportTarget.PROFILE and m.field not in PROFILE_FIELDS:
            errors.append(DomainError("UNKNOWN_FIELD", f"'{m.field}' is not a profile field", at("field")))
        if m.target is ImportTarget.IDENTITY and m.identity_type is None:
            errors.append(DomainError("IDENTITY_TYPE_REQUIRED", "an IDENTITY column needs an identityType",
                                      at("identityType")))
        if m.target is ImportTarget.TAG and (not m.tag_key or m.tag_key not in tag_definitions):
            errors.append(DomainError("UNKNOWN_TAG", f"no tag with key '{m.tag_key or ''}'", at("tagKey")))
        if m.region is not None and not valid_region(m.region):
            errors.append(DomainError("INVALID_REGION", f"'{m.region}' is not a region code such as CN or US",
                                      at("region")))
    if not any(_is_name(m) for m in mapping):
        errors.append(DomainError("NAME_COLUMN_REQUIRED",
                                  "at least one column must be the name (NAME) or the first name (FIRST_NAME)",
                                  ["mapping"]))
    if not any(m.target is ImportTarget.IDENTITY for m in mapping):
        errors.append(DomainError("IDENTIFIER_COLUMN_REQUIRED",
                                  "at least one column must be an identifier (phone, email, WhatsApp, Instagram...)",
                                  ["mapping"]))
    return errors


def unmapped_columns(mapping: Sequence[ColumnMapping], columns: Sequence[str], *, explicit: bool) -> list[DomainError]:
    """A column is dropped only when the caller says IGNORE: an unmapped one (or, for a suggested mapping,
    one only suggested to be ignored) is an error, never a silent loss."""
    covered = {m.column for m in mapping if explicit or m.target is not ImportTarget.IGNORE}
    missing = [i for i, name in enumerate(columns) if i not in covered and name.strip()]
    if not missing:
        return []
    names = ", ".join(f"{i} ({columns[i]})" for i in missing[:20])
    return [DomainError("UNMAPPED_COLUMN", f"map these columns, or map them to IGNORE to drop them: {names}",
                        ["mapping"])]


def _is_name(m: ColumnMapping) -> bool:
    return m.target in (ImportTarget.NAME, ImportTarget.FIRST_NAME) or (
        m.target is ImportTarget.PROFILE and m.field in ("display_name", "first_name"))


def valid_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


def column_rules(mapping: Sequence[ColumnMapping], tag_definitions: Mapping[str, Any]) -> list[ColumnRule]:
    """The import engine's rules for a mapping (entries validate_mapping flags are left out)."""
    rules = []
    for m in mapping:
        if m.target is ImportTarget.IGNORE:
            continue
        tag = tag_definitions.get(m.tag_key or "") if m.target is ImportTarget.TAG else None
        if m.target is ImportTarget.TAG and tag is None:
            continue
        if m.target is ImportTarget.IDENTITY and m.identity_type is None:
            continue
        if m.target is ImportTarget.PROFILE and m.field not in PROFILE_FIELDS:
            continue
        rules.append(ColumnRule(
            column=m.column, target=m.target.value, field=m.field,
            identity_type=m.identity_type.value if m.identity_type else None,
            tag={k: tag[k] for k in ("id", "key", "type", "allowed_values")} if tag else None,
            region=m.region.upper() if m.region else None))
    return rules


def template_csv() -> bytes:
    """The contacts template: UTF-8 with BOM (so Excel shows Chinese correctly), headers and one example row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_HEADERS)
    writer.writerow(TEMPLATE_EXAMPLE)
    return out.getvalue().encode("utf-8-sig")
