"""Jobs: the running attempt's heartbeat (to find jobs whose worker died) and the error report file."""
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0002_search_indexes")]

    operations = [
        ops.AddField(
            model_name="Job",
            name="heartbeat_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Job",
            name="error_file",
            field=fields.ForeignKeyField("models.File", source_field="error_file_id", null=True, db_constraint=True,
                                         to_field="id", related_name=False, on_delete=OnDelete.SET_NULL),
        ),
        # recover_stale_jobs scans only the few unfinished jobs.
        ops.RunSQL(
            ["CREATE INDEX jobs_unfinished_heartbeat ON jobs (heartbeat_at) WHERE status IN ('QUEUED', 'RUNNING')"],
            reverse_sql=["DROP INDEX jobs_unfinished_heartbeat"],
        ),
    ]
