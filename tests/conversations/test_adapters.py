"""The library adapters of the chat path, and a chat on both of their paths.

`chatsite.channels_redis_adapter` lets the snapshot script publish update frames itself;
`chatsite.channels_adapter` lets update frames past Channels' dispatch. Each falls back to
the public API when the library is not as checked, or when `LIBRARY_FALLBACKS` says so
(CI also runs this whole folder with LIBRARY_FALLBACKS=1).
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
from channels.consumer import AsyncConsumer, get_handler_name
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings as django_settings
from pytest_django import Settings

from chatsite import channels_adapter, channels_redis_adapter
from conversations import runner
from conversations.models import Conversation, Message
from tests.conversations.conftest import MODEL, reply_of
from tests.mock_upstream import MockUpstream

GROUP = "conv-1"


def _our_pubsub_layer() -> RedisPubSubChannelLayer:
    return RedisPubSubChannelLayer(hosts=[django_settings.REDIS_URL])


@pytest.mark.asyncio(loop_scope="session")
async def test_the_pubsub_layer_on_the_projects_redis_is_published_to_by_the_script(
    settings: Settings,
) -> None:
    settings.LIBRARY_FALLBACKS = False
    assert channels_redis_adapter.group_channel(_our_pubsub_layer(), GROUP)
    # Several connections to it (CHANNEL_LAYER_CONNECTIONS): the same server-wide channels.
    several = RedisPubSubChannelLayer(hosts=[django_settings.REDIS_URL] * 8)
    assert channels_redis_adapter.group_channel(several, GROUP)


@pytest.mark.asyncio(loop_scope="session")
async def test_library_fallbacks_sends_every_frame_the_public_way(settings: Settings) -> None:
    settings.LIBRARY_FALLBACKS = True
    assert channels_redis_adapter.group_channel(_our_pubsub_layer(), GROUP) == ""
    assert not channels_adapter.may_bypass_dispatch()


@pytest.mark.asyncio(loop_scope="session")
async def test_other_layers_and_other_redises_get_group_send_without_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.LIBRARY_FALLBACKS = False
    layers = [
        InMemoryChannelLayer(),
        RedisChannelLayer(hosts=[django_settings.REDIS_URL]),
        RedisPubSubChannelLayer(hosts=["redis://elsewhere.invalid:6379/0"]),
        RedisPubSubChannelLayer(hosts=[django_settings.REDIS_URL, "redis://elsewhere.invalid"]),
    ]
    with caplog.at_level(logging.WARNING, logger="chatsite.channels_redis_adapter"):
        channels = [channels_redis_adapter.group_channel(layer, GROUP) for layer in layers]
    assert channels == [""] * len(layers)
    assert not caplog.records


class _ChangedPubSubLayer(RedisPubSubChannelLayer):
    """A release whose per-loop layer no longer keeps its connections in `_shards`."""

    def _get_layer(self) -> SimpleNamespace:
        return SimpleNamespace(connections=[])


@pytest.mark.asyncio(loop_scope="session")
async def test_a_pubsub_layer_not_as_checked_falls_back_and_says_so_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.LIBRARY_FALLBACKS = False
    layer = _ChangedPubSubLayer(hosts=[django_settings.REDIS_URL])
    with caplog.at_level(logging.WARNING, logger="chatsite.channels_redis_adapter"):
        assert channels_redis_adapter.group_channel(layer, GROUP) == ""
        assert channels_redis_adapter.group_channel(layer, "conv-2") == ""
    assert len(caplog.records) == 1
    assert "not as checked" in caplog.records[0].getMessage()


def test_frames_pass_channels_dispatch_only_while_it_is_the_one_checked(
    settings: Settings,
) -> None:
    settings.LIBRARY_FALLBACKS = False
    assert channels_adapter.dispatch_checked(AsyncConsumer.dispatch)
    assert channels_adapter.may_bypass_dispatch()

    async def dispatch_of_a_later_release(self, message):  # type: ignore[no-untyped-def]
        await self.record(message)  # say, it instruments every message
        await getattr(self, get_handler_name(message))(message)

    assert not channels_adapter.dispatch_checked(dispatch_of_a_later_release)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("fallbacks", [False, True], ids=["adapters", "public-api"])
async def test_a_reply_streams_whole_and_in_order_on_both_paths(
    fallbacks: bool,
    settings: Settings,
    sockets,  # type: ignore[no-untyped-def]
    conversation: Conversation,
    mock: MockUpstream,
) -> None:
    settings.LIBRARY_FALLBACKS = fallbacks
    mock.script(tokens=40, delay=0.005)
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Hello", model=MODEL)
    final = await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == " ".join(f"tok{i}" for i in range(40))
    assert "tok39" in final
    shown = [
        max(int(n) for n in re.findall(r"tok(\d+)", frame))
        for frame in socket.frames[1:-1]
        if "tok" in frame
    ]
    assert shown, "the reply streamed in update frames before the final one"
    assert shown == sorted(shown)
