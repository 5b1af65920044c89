"""Enumerations shared by the models, the SQL and the GraphQL schema (one name for one thing)."""
from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    ADMIN = "ADMIN"
    OPERATOR = "OPERATOR"
    ANALYST = "ANALYST"
    PARTNER = "PARTNER"


class AccountType(str, Enum):
    GENERAL = "GENERAL"
    ADMIN = "ADMIN"


class UserSource(str, Enum):
    INTERNAL = "INTERNAL"
    IMPORT = "IMPORT"
    INTEGRATION = "INTEGRATION"


class Gender(str, Enum):
    UNKNOWN = "UNKNOWN"
    FEMALE = "FEMALE"
    MALE = "MALE"
    OTHER = "OTHER"


class FriendVerification(str, Enum):
    ALLOW_ALL = "ALLOW_ALL"
    NEED_CONFIRM = "NEED_CONFIRM"
    DENY_ALL = "DENY_ALL"


class MessageSettings(str, Enum):
    RECEIVE_ALL = "RECEIVE_ALL"
    RECEIVE_NO_NOTIFY = "RECEIVE_NO_NOTIFY"
    BLOCK_ALL = "BLOCK_ALL"


class Channel(str, Enum):
    PHONE = "PHONE"
    SMS = "SMS"
    EMAIL = "EMAIL"
    WHATSAPP = "WHATSAPP"
    INSTAGRAM = "INSTAGRAM"
    OTHER = "OTHER"


class IdentityType(str, Enum):
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    WHATSAPP = "WHATSAPP"
    INSTAGRAM = "INSTAGRAM"
    EXTERNAL_ID = "EXTERNAL_ID"


class Encryption(str, Enum):
    NONE = "NONE"
    MD5 = "MD5"
    SHA256 = "SHA256"
    AES = "AES"


class GroupSource(str, Enum):
    MANUAL = "MANUAL"
    IMPORT = "IMPORT"


class TagType(str, Enum):
    TEXT = "TEXT"
    MULTI_VALUE = "MULTI_VALUE"
    NUMBER = "NUMBER"
    BOOLEAN = "BOOLEAN"
    DATE = "DATE"


class TagSource(str, Enum):
    IMPORT = "IMPORT"
    MANUAL = "MANUAL"
    BULK = "BULK"


class ActivityKind(str, Enum):
    NOTE = "NOTE"
    TICKET = "TICKET"
    MESSAGE = "MESSAGE"
    MEDIA = "MEDIA"
    PROFILE_CHANGE = "PROFILE_CHANGE"
    TAG_CHANGE = "TAG_CHANGE"
    GROUP_CHANGE = "GROUP_CHANGE"
    IMPORT = "IMPORT"
    MERGE = "MERGE"


class JobKind(str, Enum):
    IMPORT = "IMPORT"
    EXPORT = "EXPORT"
    PUSH = "PUSH"


class JobStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class DestinationKind(str, Enum):
    KAFKA = "KAFKA"
    DATABANK = "DATABANK"
