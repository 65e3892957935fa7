from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import User


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
