"""The staff pages, under /staff/."""

from __future__ import annotations

from django.urls import path

from console import audit, connections, groups, people, person, shares, usage

app_name = "console"
urlpatterns = [
    path("users/", people.people, name="people"),
    path("users/<int:user_id>/approve/", people.approve, name="approve"),
    path("users/<int:user_id>/role/", people.set_role, name="set_role"),
    path("users/<int:user_id>/deactivate/", people.deactivate, name="deactivate"),
    path("users/<int:user_id>/reactivate/", people.reactivate, name="reactivate"),
    path("users/<int:user_id>/", person.person, name="person"),
    path("users/<int:user_id>/groups/", person.set_groups, name="person_groups"),
    path("users/<int:user_id>/keys/<int:key_id>/revoke/", person.revoke_key, name="revoke_key"),
    path("groups/", groups.groups, name="groups"),
    path("groups/new/", groups.add_group, name="add_group"),
    path("groups/<int:pk>/", groups.group, name="group"),
    path("groups/<int:pk>/members/", groups.members, name="group_members"),
    path("groups/<int:pk>/delete/", groups.delete_group, name="delete_group"),
    path("usage/", usage.usage, name="usage"),
    path("usage/export/", usage.usage_export, name="usage_export"),
    path("usage/people/<int:user_id>/", usage.usage_person, name="usage_person"),
    path(
        "usage/people/<int:user_id>/export/",
        usage.usage_person_export,
        name="usage_person_export",
    ),
    path("connections/", connections.connections, name="connections"),
    path("connections/new/", connections.add_connection, name="add_connection"),
    path("connections/<int:pk>/", connections.edit_connection, name="edit_connection"),
    path("connections/<int:pk>/toggle/", connections.toggle_connection, name="toggle_connection"),
    path("connections/<int:pk>/delete/", connections.delete_connection, name="delete_connection"),
    path("connections/<int:pk>/test/", connections.test_connection, name="test_connection"),
    path("shares/", shares.share_list, name="shares"),
    path("shares/<int:pk>/revoke/", shares.revoke_share, name="revoke_share"),
    path("audit/", audit.audit_log, name="audit"),
    path("audit/export.csv", audit.audit_csv, name="audit_csv"),
]
