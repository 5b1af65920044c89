"""Indexes the ORM cannot describe: GIN over tag values, case-insensitive name/username lookups."""
from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [
        ops.RunSQL(
            [
                "ALTER TABLE user_tags ALTER COLUMN \"values\" SET DEFAULT '{}'",
                "CREATE INDEX user_tags_values_gin ON user_tags USING gin (\"values\")",
                "CREATE INDEX users_workspace_lower_username ON users (workspace_id, lower(username))",
                "CREATE INDEX users_workspace_lower_display_name ON users (workspace_id, lower(display_name))",
                "ALTER TABLE jobs ALTER COLUMN status SET DEFAULT 'QUEUED'",
            ],
            reverse_sql=[
                "DROP INDEX users_workspace_lower_display_name",
                "DROP INDEX users_workspace_lower_username",
                "DROP INDEX user_tags_values_gin",
            ],
        ),
    ]
