"""People and their roles."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractUser, Group, UserManager
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone


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
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"role", "is_active"} & set(update_fields):  # type: ignore[arg-type]
            from accounts import keycache

            digests = list(self.api_keys.values_list("digest", flat=True))
            keycache.forget(digests, usable=self.may_use_api)

    @property
    def is_admin(self) -> bool:
        return self.is_active and self.role == self.Role.ADMIN

    @property
    def may_use_api(self) -> bool:
        """Active members and admins may call the platform API with their keys."""
        return self.is_active and self.role in (self.Role.ADMIN, self.Role.MEMBER)

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

    def deactivate(self) -> None:
        """Stop the account from signing in and using its keys; its data is kept."""
        self.is_active = False
        self.save(update_fields=["is_active"])

    def reactivate(self) -> None:
        """Let a deactivated account sign in again."""
        self.is_active = True
        self.save(update_fields=["is_active"])


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def live(self) -> ApiKeyQuerySet:
        """Keys that are neither revoked nor expired."""
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now())
        )


class ApiKey(models.Model):
    """A personal key for the platform API. Only its SHA-256 digest is stored."""

    PREFIX = "cs-"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)
    last_four = models.CharField(max_length=4)
    allowed_models = models.JSONField(default=list, blank=True)
    # The key's own daily token budget, within its owner's (null: none of its own).
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    def save(self, *args: object, **kwargs: object) -> None:
        created = self._state.adding
        super().save(*args, **kwargs)
        if not created:
            # A new key's digest was never looked up (nobody held its secret), so there is
            # no entry to replace: its first request caches it straight away.
            from accounts import keycache

            keycache.forget([self.digest], usable=self.is_live)

    @staticmethod
    def digest_of(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(
        cls,
        user: User,
        name: str,
        *,
        allowed_models: list[str] | None = None,
        expires_at: datetime | None = None,
        tokens_per_day: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; the secret is returned once and never stored."""
        secret = cls.PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            user=user,
            name=name,
            digest=cls.digest_of(secret),
            last_four=secret[-4:],
            allowed_models=allowed_models or [],
            expires_at=expires_at,
            tokens_per_day=tokens_per_day,
        )
        return key, secret

    @property
    def masked(self) -> str:
        return f"{self.PREFIX}…{self.last_four}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def allows_model(self, model: str) -> bool:
        """A key with no model list may use every model its owner may use."""
        return not self.allowed_models or model in self.allowed_models

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class Limits(models.Model):
    """Limits an admin set: null means not set here, 0 means unlimited.

    `models` is a list of fnmatch patterns (`llama3*`); null or empty means not set.
    """

    LIMIT_FIELDS = ("tokens_per_day", "tokens_per_month", "requests_per_minute", "concurrent")

    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    concurrent = models.PositiveIntegerField(null=True, blank=True)
    models = models.JSONField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_empty(self) -> bool:
        """Nothing is set: the row may as well not exist."""
        return not self.models and all(getattr(self, f) is None for f in self.LIMIT_FIELDS)

    def values(self) -> dict[str, object]:
        """The settings as a dict (for the audit log and the pages)."""
        return {name: getattr(self, name) for name in (*self.LIMIT_FIELDS, "models")}


class GroupLimits(Limits):
    """What a group's members may use, unless their own limits say otherwise."""

    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="limits")

    class Meta:
        verbose_name = verbose_name_plural = "group limits"

    def __str__(self) -> str:
        return f"limits of group {self.group.name}"


class PersonLimits(Limits):
    """One person's own limits, over their groups' and their role's."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="limits")

    class Meta:
        verbose_name = verbose_name_plural = "person limits"

    def __str__(self) -> str:
        return f"limits of {self.user.username}"


class Identity(models.Model):
    """A person's account at the identity provider, linked to their account here.

    The provider names the person by `issuer` and `subject` (its `iss` and `sub` claims), which
    never change; their email may. Once linked, sign-ins find the account by these alone.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    # The provider's groups made this person an admin (OIDC_ADMIN_GROUPS): leaving those groups
    # takes it back. Admins made here are left alone.
    admin_from_provider = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="identity_subject"),
            # One identity per provider and account: a second could take over the account.
            models.UniqueConstraint(fields=["issuer", "user"], name="identity_one_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


@receiver(post_delete, sender=ApiKey)
def _forget_deleted_key(sender: type[ApiKey], instance: ApiKey, **kwargs: object) -> None:
    # A signal, not a delete() override: it also runs for bulk deletes (the admin's
    # "delete selected") and for the keys of a deleted user.
    from accounts import keycache

    keycache.forget([instance.digest], usable=False)
