"""The API keys page, under /keys/."""

from __future__ import annotations

from django.urls import path

from accounts import key_views

app_name = "keys"
urlpatterns = [
    path("", key_views.key_list, name="list"),
    path("<int:key_id>/revoke/", key_views.revoke, name="revoke"),
]
