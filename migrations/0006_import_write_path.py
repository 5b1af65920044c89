"""Leaner writes of new users and identities (an import of 1M rows), and user indexes that match the queries.

Measured on 1M imported users (INSERT ... SELECT of the final rows into empty copies of the tables):
users with their 8 indexes 7.9 s (0.7 s for the heap alone); identities 10.9 s, and 20.5 s with the
per-row foreign-key check on users.
- identities lose that foreign key. Their user is either created in the same transaction (imports,
  userCreate, contactsUpsert: nobody else can delete it meanwhile) or locked by the writer first
  (`resolution.attach`, `merge`, imports of existing people); deleting a user deletes its identities
  itself and leaves a tombstone, and `models.orphans.sweep` removes any a late writer still added.
- identities are found by user through (user_id, workspace_id), not (workspace_id, user_id): the lookup
  by key then has one index that fits. With the old one, a planner misled by stale or skewed statistics
  (a table an import is growing, a workspace rare in the sample) probed it with workspace_id alone and
  scanned the workspace's identities for every key.
- users' indexes follow the reads: the keyset orders (expression, id) of `models.filters.ORDER_COLUMNS`
  had no matching index (LAST_ACTIVITY_AT and DISPLAY_NAME sorted the whole workspace, UPDATED_AT had
  none); `lower(username)` served no query (search is a substring match); username and member level
  are mostly empty, so their indexes are partial and an import without them writes neither.
"""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [('models', '0005_membership_tables_for_bulk')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Identity',
            name='user',
            field=fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=False, to_field='id', related_name='identities', on_delete=OnDelete.CASCADE),
        ),
        ops.RemoveIndex(
            model_name='Identity',
            name=None,
            fields=['workspace_id', 'user_id'],
        ),
        ops.AddIndex(
            model_name='Identity',
            index=Index(fields=['user_id', 'workspace_id']),
        ),
        ops.RemoveIndex(
            model_name='User',
            name=None,
            fields=['workspace_id', 'created_at'],
        ),
        ops.RemoveIndex(
            model_name='User',
            name=None,
            fields=['workspace_id', 'last_activity_at'],
        ),
        ops.RemoveIndex(
            model_name='User',
            name=None,
            fields=['workspace_id', 'member_level'],
        ),
        ops.RemoveConstraint(
            model_name='User',
            name=None,
            fields=['workspace', 'username'],
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['workspace_id', 'created_at', 'id']),
        ),
        ops.AddIndex(
            model_name='User',
            index=Index(fields=['workspace_id', 'updated_at', 'id']),
        ),
        ops.RunSQL(
            [
                # Tortoise records db_constraint=False in its state but emits no DDL for it.
                "ALTER TABLE identities DROP CONSTRAINT IF EXISTS identities_user_id_fkey",
                "DROP INDEX IF EXISTS users_workspace_lower_username",
                "DROP INDEX IF EXISTS users_workspace_lower_display_name",
                "CREATE UNIQUE INDEX users_workspace_username ON users (workspace_id, username)"
                " WHERE username IS NOT NULL",
                "CREATE INDEX users_workspace_member_level ON users (workspace_id, member_level)"
                " WHERE member_level IS NOT NULL",
                "CREATE INDEX users_workspace_last_activity ON users"
                " (workspace_id, COALESCE(last_activity_at, '-infinity'::timestamptz), id)",
                "CREATE INDEX users_workspace_display_name ON users (workspace_id, COALESCE(lower(display_name), ''), id)",
            ],
            reverse_sql=[
                "DROP INDEX users_workspace_display_name",
                "DROP INDEX users_workspace_last_activity",
                "DROP INDEX users_workspace_member_level",
                "DROP INDEX users_workspace_username",
                "CREATE INDEX users_workspace_lower_display_name ON users (workspace_id, lower(display_name))",
                "CREATE INDEX users_workspace_lower_username ON users (workspace_id, lower(username))",
                # Stray identities (their user deleted, not yet swept) would fail the constraint.
                "DELETE FROM identities i WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = i.user_id)",
                "ALTER TABLE identities ADD CONSTRAINT identities_user_id_fkey FOREIGN KEY (user_id)"
                " REFERENCES users (id) ON DELETE CASCADE",
            ],
        ),
    ]
