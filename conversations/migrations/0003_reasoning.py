from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("conversations", "0002_share")]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="think",
            field=models.CharField(blank=True, default="", max_length=8),
        ),
        migrations.AddField(
            model_name="message",
            name="thinking",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="message",
            name="thinking_ms",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
