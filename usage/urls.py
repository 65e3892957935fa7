"""The Usage page, under /usage/."""

from __future__ import annotations

from django.urls import path

from usage import views

app_name = "usage"
urlpatterns = [
    path("", views.usage_page, name="page"),
    path("export/", views.export, name="export"),
]
