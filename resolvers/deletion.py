"""`usersDelete`: remove the selected users and everything attached to them, for good."""
from __future__ import annotations

import strawberry
from strawberry.types import Info

from models import db, deletion
from models.errors import DomainError
from models.workspaces import audit
from resolvers.context import Context
from resolvers.selection import selected_ids_sql, selection
from schema.common import UserError, to_global_id
from schema.deletion import UsersDeleteInput, UsersDeletePayload


async def users_delete(info: Info, input: UsersDeleteInput) -> UsersDeletePayload:
    """Refused (DELETION_DISABLED) until an ADMIN enables account deletion; ids of other workspaces match nothing."""
    ctx: Context = info.context
    ctx.require("users:delete")
    try:
        if input.target.filter is not strawberry.UNSET and _is_empty(input.target.filter):
            raise DomainError("FILTER_REQUIRED", "deleting needs ids or a filter with at least one condition",
                              ["target", "filter"])
        b = await selection(ctx, input.target)
        async with db.transaction() as conn:
            deleted = await deletion.delete_selected(b, selected_ids_sql(b), conn)
            if deleted:  # in the same transaction: no deletion without its audit entry
                await audit(ctx.principal, "users.delete", count=len(deleted), ids=deleted[:MAX_LISTED], conn=conn)
    except DomainError as exc:
        return UsersDeletePayload(user_errors=[UserError.of(exc)])
    ctx.loaders.forget(ctx.loaders.user, *deleted)
    return UsersDeletePayload(deleted_count=len(deleted),
                              deleted_user_ids=[to_global_id("User", i) for i in deleted[:MAX_LISTED]])


MAX_LISTED = 1000  # ids echoed in the payload and the audit entry; the count is always exact


def _is_empty(filter_: object) -> bool:
    return filter_ is None or all(getattr(filter_, name) in (None, [], "", strawberry.UNSET)
                                  for name in vars(filter_))
