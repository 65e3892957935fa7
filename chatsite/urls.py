"""The site's URL map: health, accounts, keys, staff console, Django's admin, API, chat."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chatsite import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("accounts/", include("accounts.urls")),
    path("staff/", include("console.urls")),
    path("keys/", include("accounts.key_urls")),
    path("usage/", include("usage.urls")),
    path("django-admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("conversations.urls")),
]
