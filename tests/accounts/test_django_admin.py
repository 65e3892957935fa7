"""Django admin in our terms: superusers are admins; admins revoke keys there."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_createsuperuser_makes_an_admin() -> None:
    user = User.objects.create_superuser("root", "root@example.com", "x" * 20)
    assert user.role == User.Role.ADMIN and user.is_superuser


def test_an_admin_revokes_someone_s_key_from_django_admin(admin_client: Client) -> None:
    from accounts.models import ApiKey

    owner = make_user("zed")
    key, _ = ApiKey.issue(owner, "laptop")
    response = admin_client.post(
        "/django-admin/accounts/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
