"""The GraphQL schema: Query and Mutation wired to the resolvers, with the safety extensions."""
from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, ParserCache, QueryDepthLimiter

from resolvers import groups, identities, jobs, nodes, tags, users, workspace
from resolvers import activities, deletion, workspace_settings as settings_resolvers
from resolvers import imports
from resolvers import exports
from resolvers import destinations
from schema.activities import Activity, ActivityPayload
from schema.common import Connection, Node
from schema.deletion import UsersDeletePayload
from schema.destinations import AudiencePushPayload, Destination, DestinationDeletePayload, DestinationPayload
from schema.groups import Group, GroupDeletePayload, GroupPayload, GroupsMembershipPayload
from schema.identities import Identity, IdentityAddPayload, IdentityRemovePayload
from schema.imports import ImportPreviewPayload, ImportStartPayload, UploadCreatePayload
from schema.exports import ExportStartPayload, WorkspaceExportKey
from schema.jobs import Job, JobCancelPayload
from schema.tags import Tag, TagDeletePayload, TagGroup, TagGroupPayload, TagPayload, UsersTagPayload
from schema.users import ContactsUpsertPayload, User, UserPayload, UsersMergePayload
from schema.workspace import Viewer, Workspace, WorkspaceSettings
from schema.workspace import WorkspaceSettingsPayload
from settings import Settings, get_settings


@strawberry.type
class Query:
    node: Node | None = strawberry.field(resolver=nodes.node)
    viewer: Viewer = strawberry.field(resolver=workspace.viewer)
    workspace_settings: WorkspaceSettings = strawberry.field(resolver=workspace.workspace_settings)
    user_list_columns: list[Tag] = strawberry.field(resolver=settings_resolvers.user_list_columns)
    user: User | None = strawberry.field(resolver=users.user)
    user_by_identity: User | None = strawberry.field(resolver=users.user_by_identity)
    users: Connection[User] = strawberry.field(resolver=users.users)
    group: Group | None = strawberry.field(resolver=groups.group)
    groups: Connection[Group] = strawberry.field(resolver=groups.groups)
    tag_groups: list[TagGroup] = strawberry.field(resolver=tags.tag_groups)
    tags: list[Tag] = strawberry.field(resolver=tags.tags)
    job: Job | None = strawberry.field(resolver=jobs.job)
    jobs: Connection[Job] = strawberry.field(resolver=jobs.jobs)
    workspace_export_key: WorkspaceExportKey = strawberry.field(resolver=exports.workspace_export_key)
    destinations: Connection[Destination] = strawberry.field(resolver=destinations.destinations)


@strawberry.type
class Mutation:
    user_create: UserPayload = strawberry.mutation(resolver=users.user_create)
    user_update: UserPayload = strawberry.mutation(resolver=users.user_update)
    users_merge: UsersMergePayload = strawberry.mutation(resolver=users.users_merge)
    users_delete: UsersDeletePayload = strawberry.mutation(resolver=deletion.users_delete)
    note_add: ActivityPayload = strawberry.mutation(resolver=activities.note_add)
    activity_record: ActivityPayload = strawberry.mutation(resolver=activities.activity_record)
    workspace_settings_update: WorkspaceSettingsPayload = strawberry.mutation(
        resolver=settings_resolvers.workspace_settings_update)
    contacts_upsert: ContactsUpsertPayload = strawberry.mutation(resolver=users.contacts_upsert)
    identity_add: IdentityAddPayload = strawberry.mutation(resolver=identities.identity_add)
    identity_remove: IdentityRemovePayload = strawberry.mutation(resolver=identities.identity_remove)
    group_create: GroupPayload = strawberry.mutation(resolver=groups.group_create)
    group_update: GroupPayload = strawberry.mutation(resolver=groups.group_update)
    group_delete: GroupDeletePayload = strawberry.mutation(resolver=groups.group_delete)
    groups_associate: GroupsMembershipPayload = strawberry.mutation(resolver=groups.groups_associate)
    groups_change: GroupsMembershipPayload = strawberry.mutation(resolver=groups.groups_change)
    groups_remove_users: GroupsMembershipPayload = strawberry.mutation(resolver=groups.groups_remove_users)
    tag_group_create: TagGroupPayload = strawberry.mutation(resolver=tags.tag_group_create)
    tag_create: TagPayload = strawberry.mutation(resolver=tags.tag_create)
    tag_update: TagPayload = strawberry.mutation(resolver=tags.tag_update)
    tag_delete: TagDeletePayload = strawberry.mutation(resolver=tags.tag_delete)
    users_tag: UsersTagPayload = strawberry.mutation(resolver=tags.users_tag)
    users_untag: UsersTagPayload = strawberry.mutation(resolver=tags.users_untag)
    job_cancel: JobCancelPayload = strawberry.mutation(resolver=jobs.job_cancel)
    destination_create: DestinationPayload = strawberry.mutation(resolver=destinations.destination_create)
    destination_delete: DestinationDeletePayload = strawberry.mutation(resolver=destinations.destination_delete)
    audience_push: AudiencePushPayload = strawberry.mutation(resolver=destinations.audience_push)
    upload_create: UploadCreatePayload = strawberry.mutation(resolver=imports.upload_create)
    import_preview: ImportPreviewPayload = strawberry.mutation(resolver=imports.import_preview)
    import_start: ImportStartPayload = strawberry.mutation(resolver=imports.import_start)
    export_start: ExportStartPayload = strawberry.mutation(resolver=exports.export_start)


@strawberry.type
class Subscription:
    job_progress: Job = strawberry.subscription(resolver=jobs.job_progress)


def _mask_unexpected(error: GraphQLError) -> bool:
    """Mask bugs only: validation, auth and bad-argument errors keep their message."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or get_settings()
    extensions: list = [
        # Clients repeat the same documents: parse each one once per process. (No ValidationCache: the
        # limiters below build their rules per request, so its key would never repeat.)
        lambda: ParserCache(maxsize=512),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
    ]
    if settings.production:
        extensions.append(lambda: MaskErrors(should_mask_error=_mask_unexpected))
    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions,
                             types=[User, Group, Tag, TagGroup, Identity, Workspace, Activity])
