"""The chat pages: the landing page, a conversation, the sidebar and its actions."""

from __future__ import annotations

from django.urls import include, path

from conversations import views

chat_patterns = [
    path("c/", views.conversation_list, name="list"),
    path("c/new", views.new, name="new"),
    path("c/<int:pk>/", views.detail, name="detail"),
    path("c/<int:pk>/messages", views.messages, name="messages"),
    path("c/<int:pk>/item", views.item, name="item"),
    path("c/<int:pk>/rename", views.rename, name="rename"),
    path("c/<int:pk>/pin", views.pin, name="pin"),
    path("c/<int:pk>/settings", views.update_settings, name="settings"),
    path("c/<int:pk>/delete", views.delete, name="delete"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("", include((chat_patterns, "conversations"))),
]
