"""The audit log's entries: who did what, on what, when, from where."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from audit import actions


class AppendOnly(Exception):
    """Raised when code tries to change or remove an audit entry."""


class EntryQuerySet(models.QuerySet["Entry"]):
    """Entries can be read and added; bulk changes and deletes are refused."""

    def update(self, **kwargs: object) -> int:
        raise AppendOnly("audit entries cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit entries cannot be deleted")


class Entry(models.Model):
    """One admin or security action. Written once, never changed."""

    when = models.DateTimeField(default=timezone.now, editable=False)
    # The actor's name is kept as text so that history survives deleting the person.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    objects = EntryQuerySet.as_manager()

    class Meta:
        ordering = ["-when", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["-when", "-id"], name="audit_when"),
            models.Index(fields=["actor_name", "-when"], name="audit_actor"),
            models.Index(fields=["action", "-when"], name="audit_action"),
            models.Index(fields=["target_type", "target_id", "-when"], name="audit_target"),
            models.Index(fields=["target_label", "-when"], name="audit_target_label"),
        ]

    def __str__(self) -> str:
        who = self.actor_name or "anonymous"
        return f"{self.when:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.target_label}".strip()

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AppendOnly("audit entries cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit entries cannot be deleted")

    @property
    def action_label(self) -> str:
        return actions.label(self.action)

    @property
    def target(self) -> str:
        """The target as a filter names it: "type:id", or its label when it has no type."""
        if self.target_type and self.target_id:
            return f"{self.target_type}:{self.target_id}"
        return self.target_label

    def changes(self) -> list[tuple[str, object, object]]:
        """Each recorded field, by name, with its value before and after (None where not
        recorded). By name: PostgreSQL's JSON keeps no order of keys."""
        before, after = self.before or {}, self.after or {}
        return [(name, before.get(name), after.get(name)) for name in sorted({*before, *after})]
