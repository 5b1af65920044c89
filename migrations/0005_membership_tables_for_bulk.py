"""Group members and tag values shaped for million-user batch writes; timeline entries shared per id bucket.

Measured on 1M users (bench/batch.py): the per-row foreign-key check on users cost ~6 s of a 10 s
`groupsAssociate`, the surrogate `id` ~1.5 s, and one timeline row per user another ~5 s. So:
- `group_members` and `user_tags` lose their surrogate id (the natural key becomes the primary key,
  ordered so a batch for one group or tag appends to one place in the index) and their foreign keys.
  Deleting a user, group or tag deletes these rows itself and leaves a tombstone in `deleted_parents`;
  `models.orphans.sweep` removes rows a concurrent writer added for it once no such writer can be left.
- `shared_activities`: one timeline entry for up to 1024 users whose ids share a bucket (id >> 10);
  ids come from the activities sequence, so the timeline's (occurred_at, id) cursor spans both tables.
The Tortoise models of both tables are dropped from the ORM's state only: its models need a single-column
primary key, and nothing uses the ORM on these tables (all reads and writes are raw SQL).
"""
from tortoise import migrations
from tortoise.migrations import operations as ops


class ForgetModel(ops.DeleteModel):
    """Remove a model from Tortoise's migration state; the table stays and is reshaped by SQL below."""

    async def database_forward(self, *args: object, **kwargs: object) -> None:
        return None

    async def database_backward(self, *args: object, **kwargs: object) -> None:
        return None


_DROP_KEYS = """DO $$ DECLARE c record; BEGIN
  FOR c IN SELECT conname, conrelid::regclass AS tbl FROM pg_constraint
           WHERE conrelid IN ('group_members'::regclass, 'user_tags'::regclass) AND contype IN ('f', 'u', 'p')
  LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname); END LOOP;
END $$"""


class Migration(migrations.Migration):
    dependencies = [("models", "0004_child_tables_without_workspace_fk")]

    operations = [
        ForgetModel("GroupMember"),
        ForgetModel("UserTag"),
        ops.RunSQL(
            [
                _DROP_KEYS,
                "DROP INDEX IF EXISTS idx_user_tags_workspa_703fa6",  # (workspace_id, tag_id, user_id): now the key
                "ALTER TABLE group_members DROP COLUMN id",
                "ALTER TABLE user_tags DROP COLUMN id",
                "ALTER TABLE group_members ADD PRIMARY KEY (workspace_id, group_id, user_id)",
                # A user's own values are found by a skip scan over tag_id (PostgreSQL 18).
                "ALTER TABLE user_tags ADD PRIMARY KEY (workspace_id, tag_id, user_id)",
                """CREATE TABLE shared_activities (
                    id bigint PRIMARY KEY DEFAULT nextval('activities_id_seq'),
                    workspace_id bigint NOT NULL,
                    bucket bigint NOT NULL,
                    user_ids bigint[] NOT NULL,
                    kind varchar(16) NOT NULL,
                    payload jsonb NOT NULL DEFAULT '{}',
                    occurred_at timestamptz NOT NULL DEFAULT now(),
                    actor varchar(200),
                    created_at timestamptz NOT NULL DEFAULT now())""",
                # Out of line but not compressed: pglz on the id arrays cost 1.1 s of a 1M-user batch.
                "ALTER TABLE shared_activities ALTER COLUMN user_ids SET STORAGE EXTERNAL",
                "CREATE INDEX shared_activities_bucket ON shared_activities (workspace_id, bucket, occurred_at)",
                """CREATE TABLE deleted_parents (
                    workspace_id bigint NOT NULL,
                    kind varchar(8) NOT NULL,
                    parent_id bigint NOT NULL,
                    deleted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    seen_at timestamptz,
                    PRIMARY KEY (workspace_id, kind, parent_id))""",
            ],
        ),
    ]
