"""Tell open chat sockets at once when a session ends or an account loses access.

Every chat socket joins its person's account group (`account_group`). Signing out sends
`session.ended` with a tag of the session that ended (`session_tag`: the session key is a
secret and is not published), and the sockets of that session close. A change of password,
`is_active` or role, and the deletion of the account, send `account.changed` once the change
is committed, and each of the person's sockets checks its session again and closes if it no
longer holds.

The push is a courtesy on top of the rule that stops a socket: every frame a socket receives
is authorized again with its session (`conversations.consumers`). So a change that bypasses
`save()` (a queryset update) or a push lost to a Redis outage only delays the closing to the
socket's next frame; a failing push never fails the sign-out or the save.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils.crypto import salted_hmac

from accounts.models import User
from chatsite.pushes import push

# What the chat needs from an account: changing any of these may end its sessions' access.
ACCESS_FIELDS = ("password", "is_active", "role")


def account_group(user_id: int) -> str:
    """The channel-layer group of a person's open chat sockets."""
    return f"account-{user_id}"


def session_tag(session_key: str) -> str:
    """What a `session.ended` message names a session by (not its key, which is a secret)."""
    return salted_hmac("accounts.signals.session_tag", session_key).hexdigest()


@receiver(user_logged_out)
def close_sockets_of_ended_session(sender: object, request: Any, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is None or not session_key:
        return
    push(account_group(user.pk), {"type": "session.ended", "session": session_tag(session_key)})


@receiver(pre_save, sender=User)
def note_access_change(
    sender: type[User], instance: User, update_fields: Any, **kwargs: Any
) -> None:
    """Remember on the instance whether this save changes what its sessions may do."""
    instance._access_changed = False  # type: ignore[attr-defined]
    if instance._state.adding or instance.pk is None:
        return
    if update_fields is not None and not set(ACCESS_FIELDS) & set(update_fields):
        return
    saved = User.objects.filter(pk=instance.pk).values_list(*ACCESS_FIELDS).first()
    current = tuple(getattr(instance, name) for name in ACCESS_FIELDS)
    instance._access_changed = saved is not None and saved != current  # type: ignore[attr-defined]


@receiver(post_save, sender=User)
def check_sockets_after_access_change(sender: type[User], instance: User, **kwargs: Any) -> None:
    if getattr(instance, "_access_changed", False):
        instance._access_changed = False  # type: ignore[attr-defined]
        _push_after_commit(instance.pk)


@receiver(post_delete, sender=User)
def check_sockets_of_deleted_account(sender: type[User], instance: User, **kwargs: Any) -> None:
    _push_after_commit(instance.pk)


def _push_after_commit(user_id: int) -> None:
    transaction.on_commit(lambda: push(account_group(user_id), {"type": "account.changed"}))
