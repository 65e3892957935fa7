from __future__ import annotations

from django.urls import path

from accounts import staff

app_name = "staff"
urlpatterns = [
    path("users/", staff.users, name="users"),
    path("users/<int:user_id>/approve/", staff.approve, name="approve"),
    path("users/<int:user_id>/role/", staff.set_role, name="set_role"),
    path("users/<int:user_id>/deactivate/", staff.deactivate, name="deactivate"),
    path("users/<int:user_id>/reactivate/", staff.reactivate, name="reactivate"),
]
