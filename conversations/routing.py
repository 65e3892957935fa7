"""The websocket routes (Channels' router, beside Django's URL map): the chat socket and a
live share's read-only socket."""

from __future__ import annotations

from django.urls import path

from conversations.consumers import ChatConsumer
from conversations.share_consumer import ShareViewerConsumer

websocket_urlpatterns = [
    path("ws/c/<int:conversation_id>/", ChatConsumer.as_asgi()),
    path("ws/s/<str:token>/", ShareViewerConsumer.as_asgi()),
]
