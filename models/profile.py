"""Profile fields of a user: one column each on `users`, settable by clients and imports."""
from __future__ import annotations

PROFILE_FIELDS: tuple[str, ...] = (
    "display_name", "first_name", "last_name", "nickname", "gender", "birthday", "city",
    "country", "language", "avatar_url", "status_message", "member_level", "level", "role",
    "friend_verification", "friending_allowed", "message_settings", "primary_channel",
)
