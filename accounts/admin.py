from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiKey, User


@admin.register(User)
class ChatsiteUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "is_active", "date_joined", "last_login"]
    list_filter = ["role", "is_active"]
    fieldsets = [*UserAdmin.fieldsets, ("Role", {"fields": ["role"]})]
    actions = ["approve"]

    @admin.action(description="Approve selected pending accounts")
    def approve(self, request, queryset):  # type: ignore[no-untyped-def]
        for user in queryset.filter(role=User.Role.PENDING):
            user.approve()


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Admins see everyone's keys and can revoke them; secrets exist only with their owners."""

    list_display = [
        "name",
        "user",
        "masked",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username", "last_four"]
    readonly_fields = ["user", "digest", "last_four", "created_at", "last_used_at", "revoked_at"]
    fields = [
        "user",
        "name",
        "allowed_models",
        "expires_at",
        "last_four",
        "created_at",
        "last_used_at",
        "revoked_at",
        "digest",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # keys are issued by their owners (or `manage.py issuekey`)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):  # type: ignore[no-untyped-def]
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()  # one by one: each save drops the key from the shared cache
