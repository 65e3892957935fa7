"""Sharing a conversation by link: create, find, show, update, revoke and fork shares.

A link opens while its share is neither revoked nor expired, its conversation exists, its
owner may still chat and, for an "anyone" link, the site allows them (SHARE_ANYONE). Every
page load checks this in the database, so a revoked link is gone on every worker at once.
Live viewers' sockets (`conversations.share_consumer`) join the share's group: a revocation,
an expiry change or the conversation's deletion is pushed there once committed, and the
viewers close or re-check. Creations and revocations go to the audit log.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit import services as audit
from chatsite.pushes import push
from conversations import share_tokens
from conversations.markdown import render_markdown
from conversations.models import Conversation, Message, Share
from conversations.services import may_chat

log = logging.getLogger(__name__)

# The most recent messages a shared page shows (and a fork copies).
MESSAGES_SHOWN = 500
REVOKED = "share.revoked"
CHANGED = "share.changed"
# What a snapshot keeps of each message.
FROZEN_FIELDS = (
    "id", "role", "content", "status", "error", "model", "prompt_tokens",
    "completion_tokens", "eval_duration_ns", "html", "images", "thinking", "thinking_ms",
)  # fmt: skip


def anyone_allowed() -> bool:
    """Whether the site lets people share with anyone who has the link."""
    return bool(settings.SHARE_ANYONE)


# -- creating and changing ------------------------------------------------------------


def create(
    request: HttpRequest | None,
    conversation: Conversation,
    *,
    visibility: str,
    mode: str,
    expires_at: datetime | None,
    include_system_prompt: bool,
) -> tuple[Share, str]:
    """A new share of `conversation` and its token (returned once, never stored)."""
    if visibility == Share.Visibility.ANYONE and not anyone_allowed():
        raise ValueError("links for anyone are switched off on this site")
    token = share_tokens.new_token()
    share = Share(
        owner_id=conversation.owner_id,
        conversation=conversation,
        title=conversation.title,
        digest=share_tokens.digest_of(token),
        sealed_token=share_tokens.seal(token),
        visibility=visibility,
        mode=mode,
        include_system_prompt=include_system_prompt,
        expires_at=expires_at,
    )
    if mode == Share.Mode.SNAPSHOT:
        _take_snapshot(share, conversation)
    with transaction.atomic():
        share.save()
        audit.record(request, "share.created", share, after=audited(share))
    return share, token


def audited(share: Share) -> dict[str, Any]:
    """What the audit log keeps of a share (never its token)."""
    return {
        "conversation": share.conversation_id,
        "visibility": share.visibility,
        "mode": share.mode,
        "include_system_prompt": share.include_system_prompt,
        "expires_at": share.expires_at,
    }


def retake(share: Share) -> None:
    """Take a snapshot share's snapshot again, under the same link."""
    if share.mode != Share.Mode.SNAPSHOT or share.conversation is None:
        raise ValueError("only a snapshot of an existing conversation can be taken again")
    _take_snapshot(share, share.conversation)
    share.save(update_fields=["title", "snapshot", "snapshot_at"])


def set_expiry(share: Share, expires_at: datetime | None) -> None:
    """Change when the link stops opening; its live viewers re-check at once."""
    share.expires_at = expires_at
    share.save(update_fields=["expires_at"])
    _push_after_commit(share, CHANGED)


def revoke(request: HttpRequest | None, share: Share, reason: str = "") -> bool:
    """Revoke the link for every worker at once and close its live viewers' sockets.

    False when it was already revoked.
    """
    with transaction.atomic():
        now = timezone.now()
        if not Share.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=now):
            return False
        share.revoked_at = now
        after: dict[str, Any] = {"revoked_at": now}
        if reason:
            after["reason"] = reason
        audit.record(request, REVOKED, share, before={"revoked_at": None}, after=after)
        _push_after_commit(share, REVOKED)
    return True


@receiver(pre_delete, sender=Conversation)
def revoke_shares_of_deleted_conversation(
    sender: type[Conversation], instance: Conversation, **kwargs: Any
) -> None:
    """Deleting a conversation revokes its shares (they stay listed, as revoked)."""
    for share in Share.objects.filter(conversation=instance, revoked_at__isnull=True):
        revoke(None, share, reason="conversation deleted")


# -- opening a link -------------------------------------------------------------------


def find(token: str) -> Share | None:
    """The share `token` opens, if it opens; None for anything else."""
    if not share_tokens.is_well_formed(token):
        return None
    share = (
        Share.objects.select_related("owner", "conversation")
        .filter(digest=share_tokens.digest_of(token))
        .first()
    )
    return share if share is not None and opens(share) else None


def opens(share: Share) -> bool:
    """Whether the share's link opens now (see the module's docstring)."""
    if not share.is_active or not may_chat(share.owner):
        return False
    return share.visibility != Share.Visibility.ANYONE or anyone_allowed()


def may_view(share: Share, user: object) -> bool:
    """A team link needs a signed-in, approved account of this site; "anyone" needs none."""
    return share.visibility == Share.Visibility.ANYONE or may_chat(user)


def record_view(share: Share) -> None:
    Share.objects.filter(pk=share.pk).update(views=F("views") + 1, last_viewed_at=timezone.now())


def link(request: HttpRequest, share: Share) -> str | None:
    """The share's absolute link; None when its token cannot be unsealed any more."""
    token = share_tokens.unseal(share.sealed_token)
    return None if token is None else absolute_link(request, token)


def absolute_link(request: HttpRequest, token: str) -> str:
    return request.build_absolute_uri(reverse("conversations:shared", args=[token]))


def shown_messages(share: Share) -> list[Message]:
    """What the shared page shows, oldest first: the snapshot's messages, or the live
    conversation's latest MESSAGES_SHOWN."""
    if share.mode == Share.Mode.SNAPSHOT:
        return [_thawed(fields) for fields in (share.snapshot or {}).get("messages", [])]
    assert share.conversation is not None
    latest = list(share.conversation.messages.order_by("-pk")[:MESSAGES_SHOWN])
    latest.reverse()
    return latest


def shown_title(share: Share) -> str:
    if share.mode == Share.Mode.SNAPSHOT or share.conversation is None:
        return share.title
    return share.conversation.title


def shown_system_prompt(share: Share) -> str:
    """The system prompt, when the owner chose to include it ("" otherwise)."""
    if not share.include_system_prompt:
        return ""
    if share.mode == Share.Mode.SNAPSHOT:
        return (share.snapshot or {}).get("system_prompt", "")
    return share.conversation.system_prompt if share.conversation is not None else ""


# -- continuing in one's own account ---------------------------------------------------


def fork(share: Share, user: User) -> Conversation:
    """The shared messages as a new conversation of `user`'s, to go on with."""
    messages = [m for m in shown_messages(share) if m.status != Message.Status.STREAMING]
    source = share.conversation
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user,
            title=shown_title(share),
            model=source.model if source is not None else "",
            system_prompt=shown_system_prompt(share),
            last_message_at=timezone.now(),
        )
        # The images stay the sharer's: a fork's messages carry their text only.
        Message.objects.bulk_create(
            Message(conversation=conversation, **{**_frozen(m, with_id=False), "images": []})
            for m in messages
        )
    return conversation


# -- helpers --------------------------------------------------------------------------


def _take_snapshot(share: Share, conversation: Conversation) -> None:
    """Freeze the conversation's finished messages (a reply still being written is left
    out), its title and, if included, its system prompt into `share`."""
    messages = conversation.messages.exclude(status=Message.Status.STREAMING).order_by("-pk")
    latest = list(messages[:MESSAGES_SHOWN])
    latest.reverse()
    share.title = conversation.title
    share.snapshot = {
        "system_prompt": conversation.system_prompt if share.include_system_prompt else "",
        "messages": [_frozen(m) for m in latest],
    }
    share.snapshot_at = timezone.now()


def _frozen(message: Message, with_id: bool = True) -> dict[str, Any]:
    fields = {name: getattr(message, name) for name in FROZEN_FIELDS}
    if message.role == Message.Role.ASSISTANT and not message.html and message.content:
        fields["html"] = render_markdown(message.content)
    if not with_id:
        del fields["id"]
    return fields


def _thawed(fields: dict[str, Any]) -> Message:
    """A snapshot's message, unsaved, for the message partial."""
    return Message(**{name: fields.get(name) for name in FROZEN_FIELDS if name in fields})


def group(share_id: int) -> str:
    """The channel-layer group of a share's live viewers."""
    return f"share-{share_id}"


def _push_after_commit(share: Share, kind: str) -> None:
    share_id = share.pk
    transaction.on_commit(lambda: push(group(share_id), {"type": kind}))
