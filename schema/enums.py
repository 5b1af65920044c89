"""The domain enums, exposed to GraphQL under the same names."""
from __future__ import annotations

from enum import Enum

import strawberry

from models import enums

AccountType = strawberry.enum(enums.AccountType)
ActivityKind = strawberry.enum(enums.ActivityKind)
Channel = strawberry.enum(enums.Channel)
Encryption = strawberry.enum(enums.Encryption)
FriendVerification = strawberry.enum(enums.FriendVerification)
Gender = strawberry.enum(enums.Gender)
GroupSource = strawberry.enum(enums.GroupSource)
IdentityType = strawberry.enum(enums.IdentityType)
MessageSettings = strawberry.enum(enums.MessageSettings)
Role = strawberry.enum(enums.Role)
TagSource = strawberry.enum(enums.TagSource)
TagType = strawberry.enum(enums.TagType)
UserSource = strawberry.enum(enums.UserSource)


@strawberry.enum
class DuplicatePolicy(Enum):
    OVERWRITE = "OVERWRITE"  # an existing contact takes the new information
    IGNORE = "IGNORE"  # an existing contact stays exactly as it was


@strawberry.enum
class TagFilterOp(Enum):
    EQ = "EQ"
    IN = "IN"
    CONTAINS = "CONTAINS"
    EXISTS = "EXISTS"
    MISSING = "MISSING"
    GT = "GT"
    LT = "LT"


@strawberry.enum
class UserOrderField(Enum):
    ID = "ID"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    LAST_ACTIVITY_AT = "LAST_ACTIVITY_AT"
    DISPLAY_NAME = "DISPLAY_NAME"


@strawberry.enum
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"
