"""Publishing to a channels-redis pub/sub group from the project's own Redis scripts.

Checked against: channels-redis 4.1.0 to 4.3.0 (`channels_redis.pubsub`, read in each
release; tested on the installed one; pyproject.toml pins the minor version).
Reason: a reply's update frame goes out in the same Redis script, and the same round trip,
that saves it to the snapshot, for all of a worker's replies at once; through `group_send`
every reply costs one more round trip per publishing round (figures in bench/README.md).
What it relies on: `RedisPubSubChannelLayer._get_layer()` (the running loop's layer), its
`_shards` (its connections, each of whose `host["address"]` is the project's REDIS_URL:
Redis delivers a publish to every connection subscribed to the channel, whichever it is),
`_get_group_channel_name(group)` (the Redis channel the group's sockets listen on), and
that those sockets decode what the layer's `serialize()` makes.
Fallback: `group_channel()` answers "" and the caller publishes with the layer's public
`group_send` after the write: when the layer is another kind or on another Redis, when
those internals are not there (logged once), or when `LIBRARY_FALLBACKS=1` forces it.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings

log = logging.getLogger(__name__)


def group_channel(layer: Any, group: str) -> str:
    """The Redis channel on which `layer` delivers `group`'s messages, when a script on the
    project's Redis may publish to it directly; "" when not: then use `group_send`."""
    if settings.LIBRARY_FALLBACKS or not isinstance(layer, RedisPubSubChannelLayer):
        return ""
    try:
        loop_layer = layer._get_layer()
        shards = loop_layer._shards
        if not shards or any(s.host.get("address") != settings.REDIS_URL for s in shards):
            return ""  # on another Redis: not ours to publish to
        channel = loop_layer._get_group_channel_name(group)
    except Exception as exc:  # any surprise means: not as checked
        _not_as_checked(f"{type(exc).__name__}: {exc}")
        return ""
    if not isinstance(channel, str) or not channel:
        _not_as_checked(f"a group's channel is {channel!r}")
        return ""
    return channel


def payload(layer: Any, message: dict[str, Any]) -> bytes:
    """`message` as the layer's sockets decode it, to publish on a `group_channel()`."""
    return layer.serialize(message)


@cache
def _not_as_checked(what: str) -> None:
    """Say once why the fallback is used."""
    log.warning(
        "channels-redis is not as checked (%s): update frames are sent with group_send", what
    )
