"""The usage ledger in Django's admin."""

from __future__ import annotations

from django.contrib import admin

from usage.models import DailyUsage, Generation


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "user",
        "door",
        "model",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
    ]
    list_filter = ["door", "status"]
    search_fields = ["user__username", "model"]
    date_hierarchy = "started_at"


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    """The rollups, to look at: they are kept by the meter and rebuilt from the ledger."""

    list_display = [
        "day",
        "user",
        "model",
        "door",
        "api_key_id",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "failed",
        "stopped",
    ]
    list_filter = ["door"]
    search_fields = ["user__username", "model"]
    date_hierarchy = "day"

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
