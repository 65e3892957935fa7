"""A live share's websocket: the shared conversation's stream, read-only.

It is the chat socket (`ChatConsumer`) without any way to act on the conversation: it joins
the same conversation group and forwards the same frames, rendered once by the runner for
every socket, with the same sequence numbers, snapshot resume and quiet-reply checks. Every
frame from the page is refused: the page is told it is a read-only view, and nothing else
happens (no send, stop, regenerate or edit, whatever the frame says).

It opens only for a live share whose link opens (`shares.opens`) and whose viewer may see
it (a team link: a signed-in, approved session). Besides the conversation's group it joins
the share's group (revocations and expiry changes are pushed there), the owner's account
group (the owner losing access) and, for a signed-in viewer, their own. It checks the share
again on each push, when the link expires, and every RECHECK seconds in case a push was
lost. A link that no longer opens closes the socket with GONE (4404), and a team link's
viewer who signed out or lost access with FORBIDDEN (4403), after the page was told so.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts.models import User
from accounts.signals import account_group, session_tag
from conversations import runner, services, shares
from conversations.consumers import FORBIDDEN, REDIS_DOWN, ChatConsumer
from conversations.models import Conversation, Share

log = logging.getLogger(__name__)

GONE = 4404
RECHECK = 30.0
# Past the expiry before checking it, so that a timer firing a little early finds it expired.
EXPIRY_MARGIN = 0.05


@dataclass
class Viewer:
    """Who watches: a signed-in session (user, session key, password's auth hash), or no one."""

    user_id: int | None = None
    session_key: str = ""
    auth_hash: str = ""


@dataclass
class Verdict:
    """The share if the viewer may watch it now; else the close code that says why."""

    share: Share | None
    code: int = 0


def check(token: str, viewer: Viewer) -> Verdict:
    """Whether `viewer` may watch the live share `token` opens (in the database thread)."""
    share = shares.find(token)
    if share is None or share.mode != Share.Mode.LIVE:
        return Verdict(None, GONE)
    if share.visibility == Share.Visibility.TEAM and not _session_stands(viewer):
        return Verdict(None, FORBIDDEN)
    return Verdict(share)


def _session_stands(viewer: Viewer) -> bool:
    """The viewer's session still exists, signed in as them with the same password, and
    they may still chat (the rule of `socket_sessions.authorize`)."""
    if viewer.user_id is None or not viewer.session_key:
        return False
    user = User.objects.filter(pk=viewer.user_id).first()
    if user is None or not services.may_chat(user):
        return False
    data = _session_store()(viewer.session_key).load()
    return str(data.get(SESSION_KEY, "")) == str(user.pk) and constant_time_compare(
        user.get_session_auth_hash(), viewer.auth_hash
    )


@cache
def _session_store() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


# A turn's first frame and a new title carry the conversation's sidebar entry for the
# owner's tabs (`frames.html#sidebar_entry`): a shared page has no sidebar, and is not sent it.
SIDEBAR_TARGET = "#conv-items"
_SIDEBAR_ENTRY = re.compile(
    r'<div hx-swap-oob="afterbegin:#conv-items">.*?'
    r'<div hx-swap-oob="delete:#conv-items > template"></div>',
    re.S,
)


def without_sidebar(html: str) -> str:
    return _SIDEBAR_ENTRY.sub("", html)


# A sent message's images link to the owner's image view; a viewer reaches them through the
# share's own, which checks the link (`attachment_views`).
OWNER_IMAGES = '="/images/'


def with_share_images(html: str, token: str) -> str:
    """`html` with its image links pointed at the share's image view."""
    return html.replace(OWNER_IMAGES, f'="/s/{token}/images/')


def _viewer_of(scope: dict[str, Any]) -> Viewer:
    """Who opened the socket: a signed-in, approved session, or no one."""
    user = scope.get("user")
    if not services.may_chat(user):
        return Viewer()
    session_key = getattr(scope.get("session"), "session_key", None) or ""
    return Viewer(user.pk, session_key, user.get_session_auth_hash())  # type: ignore[union-attr]


@cache
def frame(name: str) -> str:
    """One of the fixed frames this socket sends (`share_parts.html`)."""
    return render_to_string(f"conversations/share_parts.html#{name}")


class ShareViewerConsumer(ChatConsumer):
    """A live share's read-only socket (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = ""
        self.viewer = Viewer()
        self.own_groups: list[str] = []
        self.checker: asyncio.Task[None] | None = None
        self.closing = False

    async def connect(self) -> None:
        self.token = str(self.scope["url_route"]["kwargs"]["token"])
        self.viewer = _viewer_of(self.scope)
        verdict = await self._check()
        if verdict.share is None:
            await self._open_and_close(verdict.code)
            return
        await self._join(verdict.share)
        await self.accept()
        self.answered = True
        # Checked again now that pushes reach this socket: nothing pushed in between is lost.
        verdict = await self._check()
        if verdict.share is None:
            await self._close_with(verdict.code)
            return
        self._check_again(verdict.share)
        await self._send_latest_turn()

    async def _join(self, share: Share) -> None:
        """The conversation's group, the owner's account group, the share's group and the
        viewer's own account group."""
        self.conversation_id = share.conversation_id
        self.group = runner.group(self.conversation_id)
        self.account_group = account_group(share.owner_id)
        self.own_groups = [shares.group(share.pk)]
        if self.viewer.user_id is not None:
            self.own_groups.append(account_group(self.viewer.user_id))
        for name in [self.group, self.account_group, *self.own_groups]:
            await self.channel_layer.group_add(name, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if self.checker is not None:
            self.checker.cancel()
        for name in self.own_groups:
            try:
                await self.channel_layer.group_discard(name, self.channel_name)
            except REDIS_DOWN as exc:
                log.warning("could not leave group %s: %s", name, exc)
        await super().disconnect(code)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Frames as the owner's tabs get them, less the owner's sidebar entry, with image
        links through the share."""
        if text_data is not None and SIDEBAR_TARGET in text_data:
            text_data = without_sidebar(text_data)
        if text_data is not None and OWNER_IMAGES in text_data:
            text_data = with_share_images(text_data, self.token)
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    # -- from the page: nothing is done -------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        await self.send(text_data=frame("read_only"))

    # -- from the share and the accounts -------------------------------------------------

    async def share_revoked(self, event: dict[str, Any]) -> None:
        await self._close_with(GONE)

    async def share_changed(self, event: dict[str, Any]) -> None:
        await self._recheck()

    async def session_ended(self, event: dict[str, Any]) -> None:
        """A session ended: if it is this viewer's, they watch as no one from now on."""
        if self.viewer.session_key and constant_time_compare(
            event.get("session", ""), session_tag(self.viewer.session_key)
        ):
            self.viewer = Viewer()
            await self._recheck()

    async def account_changed(self, event: dict[str, Any]) -> None:
        """The owner's or the viewer's access changed."""
        await self._recheck()

    async def _send_latest_turn(self) -> None:
        try:
            await super()._send_latest_turn()
        except Conversation.DoesNotExist:
            await self._close_with(GONE)  # deleted meanwhile: its shares are revoked

    # -- checking -----------------------------------------------------------------------

    async def _check(self) -> Verdict:
        return await database_sync_to_async(check)(self.token, self.viewer)

    async def _recheck(self) -> None:
        verdict = await self._check()
        if verdict.share is None:
            await self._close_with(verdict.code)
        else:
            self._check_again(verdict.share)

    def _check_again(self, share: Share) -> None:
        """Check the share again at its expiry, or after RECHECK seconds if sooner."""
        if self.checker is not None:
            self.checker.cancel()
        delay = RECHECK
        if share.expires_at is not None:
            left = (share.expires_at - timezone.now()).total_seconds() + EXPIRY_MARGIN
            delay = max(0.0, min(delay, left))
        self.checker = asyncio.get_running_loop().create_task(self._check_later(delay))

    async def _check_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:  # in turn with the frames
            if self.closing:
                return
            self.checker = None  # this task ends here; _recheck may start the next one
            try:
                await self._recheck()
            except Exception:
                log.warning(
                    "could not check share socket %s again", self.channel_name, exc_info=True
                )

    async def _close_with(self, code: int) -> None:
        """Tell the page why, then close."""
        if self.closing:
            return
        self.closing = True
        if self.checker is not None and self.checker is not asyncio.current_task():
            self.checker.cancel()
        await self.send(text_data=frame("gone" if code == GONE else "forbidden"))
        await self.close(code=code)

    async def _open_and_close(self, code: int) -> None:
        """A socket that may not watch: accepted only to say why the page shows nothing new."""
        await self.accept()
        self.answered = True
        await self._close_with(code)
