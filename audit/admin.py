"""The audit log in Django admin: readable by admins, changeable by nobody."""

from __future__ import annotations

from django.contrib import admin

from audit.models import Entry


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = ["when", "actor_name", "action", "target_type", "target_label", "address"]
    list_filter = ["action"]
    search_fields = ["actor_name", "target_label", "target_id"]
    date_hierarchy = "when"
    readonly_fields = [field.name for field in Entry._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
