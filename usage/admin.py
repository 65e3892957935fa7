"""The usage ledger in Django's admin."""

from __future__ import annotations

from django.contrib import admin

from usage.models import Generation


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
        "duration_ms",
    ]
    list_filter = ["door", "status"]
    search_fields = ["user__username", "model"]
    date_hierarchy = "started_at"
