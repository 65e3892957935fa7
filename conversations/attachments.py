"""Images attached to chat messages: checked on upload, claimed by a message, sent to the
model, and their files deleted with them.

An upload is checked by its content (Pillow opens it: PNG, JPEG, WebP or GIF only), its
size (IMAGE_MAX_BYTES) and how many are pending (IMAGE_MAX_COUNT). It stays pending until a
sent message claims it (`attach`, in the transaction that saves the message). Files live
in `conversations.models.attachment_storage`, under a random name.
"""

from __future__ import annotations

import base64
import logging
import uuid
import warnings
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from PIL import Image, UnidentifiedImageError

from conversations.models import Attachment, Conversation, Message

log = logging.getLogger(__name__)

# Pillow's format name -> (content type, file extension). Never SVG.
FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
NOT_AN_IMAGE = "That file is not an image this chat takes: attach a PNG, JPEG, WebP or GIF."
GONE = "An attached image is no longer available: attach it again."
NO_VISION = "The model {model} cannot see images. Pick a model that can, or remove the images."


class Refused(Exception):
    """An image (or a set of them) that may not be attached, with the words for the page."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def max_bytes() -> int:
    return int(settings.IMAGE_MAX_BYTES)


def max_count() -> int:
    return int(settings.IMAGE_MAX_COUNT)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


def examine(upload: UploadedFile) -> tuple[str, str, int, int]:
    """The image's content type, extension, width and height, read from its bytes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(upload) as image:
                kind = FORMATS.get(image.format or "")
                width, height = image.size
                if kind is None:
                    raise Refused(NOT_AN_IMAGE, status=415)
                image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused("That image has too many pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Refused(NOT_AN_IMAGE, status=415) from None
    finally:
        upload.seek(0)
    return kind[0], kind[1], width, height


def pending(conversation: Conversation) -> list[Attachment]:
    """The conversation's images uploaded and not sent yet, oldest first."""
    return list(conversation.attachments.filter(message__isnull=True))


def store(conversation: Conversation, upload: UploadedFile | None) -> Attachment:
    """Check an uploaded image and keep it as pending for `conversation`."""
    if upload is None:
        raise Refused("Choose an image to attach.")
    if upload.size is not None and upload.size > max_bytes():
        raise Refused(
            f"That image is larger than {_megabytes(max_bytes())}, the most one may be.",
            status=413,
        )
    if conversation.attachments.filter(message__isnull=True).count() >= max_count():
        raise Refused(f"A message can carry at most {max_count()} images.")
    content_type, extension, width, height = examine(upload)
    attachment = Attachment(
        owner_id=conversation.owner_id,
        conversation=conversation,
        content_type=content_type,
        size=upload.size or 0,
        width=width,
        height=height,
    )
    name = f"{conversation.pk}/{uuid.uuid4().hex}.{extension}"
    attachment.file.save(name, upload, save=False)
    try:
        attachment.save()
    except Exception:
        attachment.file.storage.delete(attachment.file.name)
        raise
    return attachment


def remove_pending(conversation: Conversation, attachment_id: str) -> bool:
    """Delete a pending image of the conversation (its file goes too); False if none."""
    key = _uuid(attachment_id)
    if key is None:
        return False
    found = conversation.attachments.filter(pk=key, message__isnull=True).first()
    if found is None:
        return False
    found.delete()
    return True


def requested_ids(value: Any) -> list[uuid.UUID]:
    """The attachment ids a send frame carries (one string, a list of them, or none)."""
    if value in (None, "", []):
        return []
    values = value if isinstance(value, list) else [value]
    ids = [_uuid(v) for v in values]
    if any(key is None for key in ids):
        raise Refused(GONE)
    unique = list(dict.fromkeys(ids))
    if len(unique) > max_count():
        raise Refused(f"A message can carry at most {max_count()} images.")
    return unique  # type: ignore[return-value]


def attach(message: Message, ids: list[uuid.UUID]) -> None:
    """Let the user's new `message` claim its pending images (in the caller's transaction).

    Each must belong to the message's conversation (hence its owner) and not be sent yet.
    """
    if not ids:
        return
    claimed = Attachment.objects.filter(
        pk__in=ids, conversation_id=message.conversation_id, message__isnull=True
    ).update(message=message)
    if claimed != len(ids):
        raise Refused(GONE)
    message.images = [str(key) for key in ids]
    message.save(update_fields=["images"])


def encoded(message: Message) -> list[str]:
    """The message's images as base64 (the engine's `images`), in the order they were sent."""
    by_id = {str(a.pk): a for a in message.attachments.all()}
    out = []
    for key in message.images:
        attachment = by_id.get(key)
        if attachment is None:
            continue
        with attachment.file.open("rb") as handle:
            out.append(base64.b64encode(handle.read()).decode("ascii"))
    return out


def vision_refusal(model: str) -> str:
    return NO_VISION.format(model=model)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


@receiver(post_delete, sender=Attachment)
def delete_file(sender: type[Attachment], instance: Attachment, **kwargs: Any) -> None:
    """An attachment's file goes once its row's deletion is committed (also when its
    conversation or message is deleted)."""
    name, storage = instance.file.name, instance.file.storage
    if not name:
        return

    def remove() -> None:
        try:
            storage.delete(name)
        except Exception as exc:
            log.warning("could not delete attachment file %s: %s", name, exc)

    transaction.on_commit(remove)
