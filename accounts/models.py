"""People and their roles."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class ChatsiteUserManager(UserManager["User"]):
    def create_superuser(self, username, email=None, password=None, **extra_fields):  # type: ignore[no-untyped-def]
        # `createsuperuser` makes an admin in our own terms.
        extra_fields.setdefault("role", "admin")
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """A member of the team; `role` decides what they may do."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"
        PENDING = "pending", "Waiting for approval"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PENDING)

    objects = ChatsiteUserManager()

    class Meta:
        ordering = ["username"]

    def save(self, *args: object, **kwargs: object) -> None:
        # Django admin access follows the role, so there is one source of truth.
        self.is_staff = self.is_superuser = self.role == self.Role.ADMIN
        super().save(*args, **kwargs)

    @property
    def is_admin(self) -> bool:
        return self.is_active and self.role == self.Role.ADMIN

    @property
    def is_pending(self) -> bool:
        return self.role == self.Role.PENDING

    def approve(self) -> None:
        """Let a pending account in as a member."""
        if self.role == self.Role.PENDING:
            self.role = self.Role.MEMBER
            self.save(update_fields=["role", "is_staff", "is_superuser"])

    def set_role(self, role: str) -> None:
        """Change the role (admin, member or pending)."""
        self.role = self.Role(role)
        self.save(update_fields=["role", "is_staff", "is_superuser"])
