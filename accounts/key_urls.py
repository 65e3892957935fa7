from __future__ import annotations

from django.urls import path

from accounts import keys

app_name = "keys"
urlpatterns = [
    path("", keys.key_list, name="list"),
    path("<int:key_id>/revoke/", keys.revoke, name="revoke"),
]
