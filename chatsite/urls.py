from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chatsite import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("accounts/", include("accounts.urls")),
    path("staff/", include("accounts.staff_urls")),
    path("keys/", include("accounts.key_urls")),
    path("django-admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("llm.urls")),
    path("", include("usage.urls")),
    path("", include("conversations.urls")),
]
