"""The chat pages: the landing page, a conversation, the sidebar and its actions, and the
share pages (the dialog, the shared page, the Shared links page)."""

from __future__ import annotations

from django.urls import include, path

from conversations import (
    attachment_views,
    export_views,
    parameter_views,
    reasoning_views,
    share_views,
    views,
)

chat_patterns = [
    path("c/", views.conversation_list, name="list"),
    path("c/new", views.new, name="new"),
    path("c/<int:pk>/", views.detail, name="detail"),
    path("c/<int:pk>/messages", views.messages, name="messages"),
    path("c/<int:pk>/item", views.item, name="item"),
    path("c/<int:pk>/rename", views.rename, name="rename"),
    path("c/<int:pk>/pin", views.pin, name="pin"),
    path("c/<int:pk>/settings", views.update_settings, name="settings"),
    path("c/<int:pk>/think", reasoning_views.update_think, name="think"),
    path("c/<int:pk>/parameters", parameter_views.update_parameters, name="parameters"),
    path("c/<int:pk>/export.md", export_views.export_markdown, name="export_markdown"),
    path("c/<int:pk>/export.json", export_views.export_json, name="export_json"),
    path("c/export.json", export_views.export_all, name="export_all"),
    path("c/<int:pk>/delete", views.delete, name="delete"),
    path("c/<int:pk>/attachments", attachment_views.upload, name="attach"),
    path(
        "c/<int:pk>/attachments/<str:attachment_id>/remove",
        attachment_views.remove,
        name="attachment_remove",
    ),
    path("images/<uuid:attachment_id>", attachment_views.image, name="image"),
    path(
        "s/<str:token>/images/<uuid:attachment_id>",
        attachment_views.shared_image,
        name="shared_image",
    ),
    path("c/<int:pk>/share", share_views.new_share, name="share"),
    path("s/<str:token>/", share_views.shared, name="shared"),
    path("s/<str:token>/fork", share_views.fork, name="fork"),
    path("shares/", share_views.share_list, name="shares"),
    path("shares/<int:pk>/update", share_views.share_update, name="share_update"),
    path("shares/<int:pk>/expiry", share_views.share_expiry, name="share_expiry"),
    path("shares/<int:pk>/revoke", share_views.share_revoke, name="share_revoke"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("", include((chat_patterns, "conversations"))),
]
