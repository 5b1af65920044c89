"""`UserSelector` (ids | filter) as SQL over `users u`, for batch mutations."""
from __future__ import annotations

import strawberry

from models.errors import DomainError
from models.filters import SqlBuilder
from resolvers.context import Context
from resolvers.users import compiled_filter
from schema.common import pks
from schema.users import UserSelector

MAX_IDS = 10_000


async def selection(ctx: Context, target: UserSelector) -> SqlBuilder:
    """The selected users' conditions; `ids` of another workspace simply select nothing."""
    ids = target.ids if target.ids is not strawberry.UNSET else None
    if ids is not None:
        if len(ids) > MAX_IDS:
            raise DomainError("TOO_MANY_IDS", f"at most {MAX_IDS} ids; use a filter for more", ["target", "ids"])
        b = SqlBuilder(ctx.workspace_id)
        b.where.append(f"u.id = ANY({b.arg(pks(ids, 'User', ['target', 'ids']))}::bigint[])")
        return b
    filter_ = target.filter if target.filter is not strawberry.UNSET else None
    try:
        return await compiled_filter(ctx, filter_)
    except DomainError as exc:
        if exc.field and exc.field[0] == "filter":
            exc.field = ["target", *exc.field]
        raise


def selected_ids_sql(b: SqlBuilder) -> str:
    return f"SELECT u.id FROM users u WHERE {' AND '.join(b.where)}"
