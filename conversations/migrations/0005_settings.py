import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The full-text index of search (conversations.search), on PostgreSQL only: the
# expression is the one conversations.search queries with, so the planner uses it.
POSTGRES_INDEXES = [
    "CREATE INDEX IF NOT EXISTS message_fts ON conversations_message "
    "USING gin (to_tsvector('simple'::regconfig, COALESCE(content, '')))",
]
DROP_INDEXES = [
    "DROP INDEX IF EXISTS message_fts",
]


def _run(statements):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_attachments"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="temperature",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="top_p",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="max_tokens",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="num_ctx",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="seed",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="ModelChoice",
            fields=[
                (
                    "owner",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="model_choice",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("model", models.CharField(max_length=200)),
                ("chosen_at", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.RunPython(_run(POSTGRES_INDEXES), _run(DROP_INDEXES), elidable=False),
    ]
