"""A BRIN index on ChainQuote.taken_at, on PostgreSQL only (see analytics.models)."""

from django.db import migrations

CREATE = "CREATE INDEX IF NOT EXISTS chain_quote_time_brin ON analytics_chainquote USING brin (taken_at) WITH (autosummarize = on)"
DROP = "DROP INDEX IF EXISTS chain_quote_time_brin"


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_initial")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
