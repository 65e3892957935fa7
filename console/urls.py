"""The staff pages, under /staff/."""

from __future__ import annotations

from django.urls import path

from console import connections, people

app_name = "console"
urlpatterns = [
    path("users/", people.people, name="people"),
    path("users/<int:user_id>/approve/", people.approve, name="approve"),
    path("users/<int:user_id>/role/", people.set_role, name="set_role"),
    path("users/<int:user_id>/deactivate/", people.deactivate, name="deactivate"),
    path("users/<int:user_id>/reactivate/", people.reactivate, name="reactivate"),
    path("connections/", connections.connections, name="connections"),
    path("connections/new/", connections.add_connection, name="add_connection"),
    path("connections/<int:pk>/", connections.edit_connection, name="edit_connection"),
    path("connections/<int:pk>/toggle/", connections.toggle_connection, name="toggle_connection"),
    path("connections/<int:pk>/delete/", connections.delete_connection, name="delete_connection"),
    path("connections/<int:pk>/test/", connections.test_connection, name="test_connection"),
]
