"""The usage ledger: one row per generation, from the browser or the API."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Generation(models.Model):
    """One generation: who, through which door, which model, how many tokens, how it ended."""

    class Door(models.TextChoices):
        WEB = "web", "Browser"
        API = "api", "API"

    class Status(models.TextChoices):
        OK = "ok", "Completed"
        STOPPED = "stopped", "Stopped"
        INTERRUPTED = "interrupted", "Interrupted"
        ERROR = "error", "Failed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generations"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generations",
    )
    door = models.CharField(max_length=8, choices=Door.choices)
    model = models.CharField(max_length=200)
    connection = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usage_source = models.CharField(max_length=16, default="upstream")
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    # From the start of the generation to its first token; null when none came.
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["user", "started_at"]),
            models.Index(fields=["started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.model} {self.status}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Counters(models.Model):
    """What a rollup row counts of the generations it sums."""

    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    ok = models.PositiveIntegerField(default=0)
    stopped = models.PositiveIntegerField(default=0)
    interrupted = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveBigIntegerField(default=0)
    # Times to first token: how many generations had one, their sum, and their histogram
    # (usage.ttft: one column per bucket, fastest first).
    ttft_count = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveBigIntegerField(default=0)
    ttft_00 = models.PositiveIntegerField(default=0)
    ttft_01 = models.PositiveIntegerField(default=0)
    ttft_02 = models.PositiveIntegerField(default=0)
    ttft_03 = models.PositiveIntegerField(default=0)
    ttft_04 = models.PositiveIntegerField(default=0)
    ttft_05 = models.PositiveIntegerField(default=0)
    ttft_06 = models.PositiveIntegerField(default=0)
    ttft_07 = models.PositiveIntegerField(default=0)
    ttft_08 = models.PositiveIntegerField(default=0)
    ttft_09 = models.PositiveIntegerField(default=0)
    ttft_10 = models.PositiveIntegerField(default=0)
    ttft_11 = models.PositiveIntegerField(default=0)
    ttft_12 = models.PositiveIntegerField(default=0)
    ttft_13 = models.PositiveIntegerField(default=0)
    ttft_14 = models.PositiveIntegerField(default=0)
    ttft_15 = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class DailyUsage(Counters):
    """The ledger summed per day (UTC, by `started_at`), person, model, door and API key.

    Kept in the same transaction as every ledger row (`usage.rollups`), so that usage pages
    read a few rows per day instead of every generation. `api_key` keeps the key's id even
    after the key row is deleted (no database constraint, nothing cascades), so a deletion
    never has to merge rollups.
    """

    day = models.DateField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage"
    )
    model = models.CharField(max_length=200)
    door = models.CharField(max_length=8, choices=Generation.Door.choices)
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        constraints = [
            # One row per combination; a browser row (no key) is unique without the key.
            models.UniqueConstraint(
                fields=["user", "day", "model", "door", "api_key"],
                condition=models.Q(api_key__isnull=False),
                name="usage_daily_one_row_per_key",
            ),
            models.UniqueConstraint(
                fields=["user", "day", "model", "door"],
                condition=models.Q(api_key__isnull=True),
                name="usage_daily_one_row_without_key",
            ),
        ]
        indexes = [
            models.Index(fields=["day"], name="usage_daily_day"),
            models.Index(fields=["user", "day"], name="usage_daily_user_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.user_id} {self.model} {self.door}"


class DailyModelUsage(Counters):
    """The ledger summed per day (UTC), model and door, for everyone: `DailyUsage` without
    people and keys, a few rows a day, so that team-wide figures (models, doors, times to
    first token) stay cheap however many people there are. Kept in the same transaction."""

    day = models.DateField()
    model = models.CharField(max_length=200)
    door = models.CharField(max_length=8, choices=Generation.Door.choices)

    class Meta:
        verbose_name = "daily usage per model"
        verbose_name_plural = "daily usage per model"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "model", "door"], name="usage_daily_model_one_row"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.door}"


class DailyPersonUsage(Counters):
    """The ledger summed per day (UTC), person, door and API key: `DailyUsage` without the
    model, for splitting everyone's usage by person, group or key. Kept in the same
    transaction; `api_key` as in `DailyUsage`."""

    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    door = models.CharField(max_length=8, choices=Generation.Door.choices)
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        verbose_name = "daily usage per person"
        verbose_name_plural = "daily usage per person"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "user", "door", "api_key"],
                condition=models.Q(api_key__isnull=False),
                name="usage_daily_person_one_row_per_key",
            ),
            models.UniqueConstraint(
                fields=["day", "user", "door"],
                condition=models.Q(api_key__isnull=True),
                name="usage_daily_person_one_row_without_key",
            ),
        ]
        indexes = [models.Index(fields=["day"], name="usage_daily_person_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.user_id} {self.door}"
