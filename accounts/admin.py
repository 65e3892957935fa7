from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import ApiKey, User
from audit import services as audit

# A change in Django admin's user form, and the audit action it is recorded as.
ACCESS_ACTIONS = {
    ("role", "pending", "member"): "account.approved",
    ("is_active", True, False): "account.deactivated",
    ("is_active", False, True): "account.reactivated",
}


def _audit_access(request, person: User, saved: dict) -> None:  # type: ignore[no-untyped-def]
    """Record the role or active state an admin changed in the user form."""
    for field, old in saved.items():
        new = getattr(person, field)
        if new != old:
            action = ACCESS_ACTIONS.get((field, old, new), "account.role")
            audit.record(request, action, person, before={field: old}, after={field: new})


@admin.register(User)
class ChatsiteUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "is_active", "date_joined", "last_login"]
    list_filter = ["role", "is_active"]
    fieldsets = [*UserAdmin.fieldsets, ("Role", {"fields": ["role"]})]
    actions = ["approve"]

    @admin.action(description="Approve selected pending accounts")
    def approve(self, request, queryset):  # type: ignore[no-untyped-def]
        for user in queryset.filter(role=User.Role.PENDING):
            with audit.changes(request, "account.approved", user, "role"):
                user.approve()

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        """Save as Django admin does; a changed role or active state goes to the audit log."""
        saved = User.objects.filter(pk=obj.pk).values("role", "is_active").first()
        super().save_model(request, obj, form, change)
        if change and saved:
            _audit_access(request, obj, saved)


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
        "tokens_per_day",
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
            with audit.changes(request, "key.revoked", key, "revoked_at"):
                key.revoke()  # one by one: each save drops the key from the shared cache
