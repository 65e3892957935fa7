"""Telling open sockets, on any worker, from synchronous code (views, signal receivers)."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

# A push waits this long for the channel layer at most: a Redis outage must not hang a view.
PUSH_TIMEOUT = 2.0


def push(group: str, message: dict[str, str]) -> None:
    """Send `message` to `group`'s sockets now; a failure is only logged (the sockets check
    again on their own)."""
    try:
        async_to_sync(_send)(group, message)
    except Exception as exc:
        log.warning("could not tell the open sockets of %s: %s", group, exc)


async def _send(group: str, message: dict[str, str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async with asyncio.timeout(PUSH_TIMEOUT):
        await layer.group_send(group, message)
