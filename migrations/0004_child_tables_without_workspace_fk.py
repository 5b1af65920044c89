"""Hot child tables (identities, group members, tag values, activities) drop their workspace FK:
the user_id FK (ON DELETE CASCADE) already ties each row to a workspace's user, and the extra check
cost ~20% of every bulk insert."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_jobs_heartbeat')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Activity',
            name='workspace',
            field=fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE),
        ),
        ops.AlterField(
            model_name='GroupMember',
            name='workspace',
            field=fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE),
        ),
        ops.AlterField(
            model_name='Identity',
            name='workspace',
            field=fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE),
        ),
        ops.AlterField(
            model_name='UserTag',
            name='workspace',
            field=fields.ForeignKeyField('models.Workspace', source_field='workspace_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE),
        ),
        # Tortoise records db_constraint=False in its state but emits no DDL for it: drop them here.
        ops.RunSQL(
            [f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_workspace_id_fkey"
             for table in ("identities", "group_members", "user_tags", "activities")],
            reverse_sql=[f"ALTER TABLE {table} ADD CONSTRAINT {table}_workspace_id_fkey FOREIGN KEY (workspace_id)"
                         f" REFERENCES workspaces (id) ON DELETE CASCADE"
                         for table in ("identities", "group_members", "user_tags", "activities")],
        ),
    ]
