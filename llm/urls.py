from __future__ import annotations

from django.urls import path

from llm import views

app_name = "llm"
urlpatterns = [
    path("staff/connections/", views.connections, name="connections"),
    path("staff/connections/new/", views.add, name="add"),
    path("staff/connections/<int:pk>/", views.edit, name="edit"),
    path("staff/connections/<int:pk>/toggle/", views.toggle, name="toggle"),
    path("staff/connections/<int:pk>/delete/", views.delete, name="delete"),
    path("staff/connections/<int:pk>/test/", views.test, name="test"),
]
