"""Conversations and their messages."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def for_sidebar(self, owner: object) -> ConversationQuerySet:
        """The owner's conversations that have messages: pinned first, then newest first."""
        return self.filter(owner=owner, last_message_at__isnull=False).order_by(
            "-pinned", "-last_message_at", "-pk"
        )

    def search(self, query: str) -> ConversationQuerySet:
        """Conversations whose title or any message contains `query` (case-insensitive)."""
        query = query.strip()
        if not query:
            return self
        matching = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        return self.filter(Q(title__icontains=query) | Exists(matching))


class Conversation(models.Model):
    """A thread between one person and the models they pick."""

    DEFAULT_TITLE = "New chat"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default=DEFAULT_TITLE)
    model = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    # The think switch (`conversations.reasoning.THINK_CHOICES`); "" = the model's default.
    think = models.CharField(max_length=8, blank=True, default="")
    # Generation parameters; null means "the model server's default" (conversations.parameters).
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    num_ctx = models.PositiveIntegerField(null=True, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    pinned = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Null while the conversation is an empty draft; orders the sidebar ("newest first").
    last_message_at = models.DateTimeField(null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["owner", "-pinned", "-last_message_at"], name="conversation_sidebar"
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_draft(self) -> bool:
        return self.last_message_at is None

    @property
    def group_name(self) -> str:
        """The channel-layer group every socket on this conversation joins."""
        return f"conv-{self.pk}"

    def touch(self) -> None:
        self.last_message_at = timezone.now()
        self.save(update_fields=["last_message_at"])


class Message(models.Model):
    """One message of a conversation; an assistant reply carries its status and metrics."""

    class Role(models.TextChoices):
        USER = "user", "You"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        STOPPED = "stopped", "Stopped"
        INTERRUPTED = "interrupted", "Interrupted"
        ERROR = "error", "Failed"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # The model's reasoning text, and how long it thought (first thinking to first answer).
    thinking = models.TextField(blank=True)
    thinking_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    eval_duration_ns = models.BigIntegerField(null=True, blank=True)
    usage_source = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    checkpointed_at = models.DateTimeField(null=True, blank=True)
    # The sanitized HTML of a finished reply, rendered once so pages stay cheap.
    html = models.TextField(blank=True, editable=False)
    # The ids of the images attached to a user's message, in order (`Attachment`): the
    # page shows them without a query, in any context.
    images = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(fields=["conversation", "-id"], name="message_latest"),
            models.Index(
                fields=["status"],
                name="message_streaming",
                condition=Q(status="streaming"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def dom_id(self) -> str:
        return f"msg-{self.pk}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def is_assistant(self) -> bool:
        return self.role == self.Role.ASSISTANT

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens per second of generation, from the upstream's timings."""
        if not self.completion_tokens or not self.eval_duration_ns:
            return None
        return self.completion_tokens / (self.eval_duration_ns / 1e9)

    @property
    def thinking_seconds(self) -> float | None:
        """How long the model thought before answering, in seconds."""
        return None if self.thinking_ms is None else self.thinking_ms / 1000

    def as_upstream(self) -> dict[str, str]:
        """The message as the engine takes it (Ollama-native)."""
        return {"role": self.role, "content": self.content}


def attachment_storage() -> Storage:
    """Where attachments' files live: STORAGES["attachments"] when a deployment names one,
    else files under DATA_DIR (ATTACHMENTS_DIR)."""
    if "attachments" in settings.STORAGES:
        return storages["attachments"]
    return FileSystemStorage(location=settings.ATTACHMENTS_DIR, base_url=None)


class Attachment(models.Model):
    """An image a person uploaded to a conversation: pending until a message carries it.

    Its id is random (never guessable); its file is only served through an access check
    (`conversations.attachment_views`) and deleted with it (`conversations.attachments`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="attachments"
    )
    # Null while pending (uploaded, not yet sent).
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(storage=attachment_storage, max_length=255)
    content_type = models.CharField(max_length=32)
    size = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.content_type} {self.width}x{self.height} ({self.pk})"


class ShareQuerySet(models.QuerySet["Share"]):
    def still_open(self) -> ShareQuerySet:
        """Shares whose link still opens: not revoked, not expired, conversation kept."""
        return self.filter(revoked_at__isnull=True, conversation__isnull=False).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        )


class Share(models.Model):
    """A link to a conversation: who may open it, what it shows, until when.

    The link's token is never stored: `digest` (its SHA-256) finds the share, and
    `sealed_token` (encrypted, `conversations.share_tokens`) lets the owner copy it again.
    A snapshot share shows `snapshot`, the conversation as it was at `snapshot_at`; a live
    share shows the conversation as it is, replies streaming.
    """

    class Visibility(models.TextChoices):
        TEAM = "team", "Team"
        ANYONE = "anyone", "Anyone with the link"

    class Mode(models.TextChoices):
        SNAPSHOT = "snapshot", "Snapshot"
        LIVE = "live", "Live"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shares"
    )
    # Null once the conversation is deleted (the share is revoked then, and kept for the list).
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="shares"
    )
    title = models.CharField(max_length=200)
    digest = models.CharField(max_length=64, unique=True)
    sealed_token = models.TextField()
    visibility = models.CharField(max_length=16, choices=Visibility.choices)
    mode = models.CharField(max_length=16, choices=Mode.choices)
    include_system_prompt = models.BooleanField(default=False)
    snapshot = models.JSONField(null=True, blank=True)
    snapshot_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    views = models.PositiveIntegerField(default=0)
    last_viewed_at = models.DateTimeField(null=True, blank=True)

    objects = ShareQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="share_owner")]

    def __str__(self) -> str:
        return f"{self.title} ({self.get_visibility_display().lower()}, {self.mode})"

    @property
    def is_live(self) -> bool:
        return self.mode == self.Mode.LIVE

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        """The link still opens (the site's setting for "anyone" links aside)."""
        return self.revoked_at is None and self.conversation_id is not None and not self.is_expired


class ModelChoice(models.Model):
    """The model a person last picked in the chat's picker: new chats start with it."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="model_choice",
    )
    model = models.CharField(max_length=200)
    chosen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.model
