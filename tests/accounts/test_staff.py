from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_members_cannot_open_the_people_page(member_client: Client) -> None:
    assert member_client.get(reverse("staff:users")).status_code == 403


def test_the_people_page_lists_pending_accounts_first(admin_client: Client) -> None:
    make_user("zed", role=User.Role.MEMBER)
    make_user("yan", role=User.Role.PENDING)
    response = admin_client.get(reverse("staff:users"))
    text = response.content.decode()
    assert response.status_code == 200
    assert "1 waiting for approval" in text
    assert text.index("yan") < text.index("zed")


def test_approving_is_one_post(admin_client: Client) -> None:
    waiting = make_user("yan", role=User.Role.PENDING)
    response = admin_client.post(reverse("staff:approve", args=[waiting.pk]))
    assert response.status_code == 302
    waiting.refresh_from_db()
    assert waiting.role == User.Role.MEMBER


def test_approving_needs_a_post(admin_client: Client) -> None:
    waiting = make_user("yan", role=User.Role.PENDING)
    assert admin_client.get(reverse("staff:approve", args=[waiting.pk])).status_code == 405
    waiting.refresh_from_db()
    assert waiting.role == User.Role.PENDING


def test_an_admin_promotes_and_demotes(admin_client: Client) -> None:
    person = make_user("zed")
    admin_client.post(reverse("staff:set_role", args=[person.pk]), {"role": "admin"})
    person.refresh_from_db()
    assert person.is_admin and person.is_staff
    admin_client.post(reverse("staff:set_role", args=[person.pk]), {"role": "member"})
    person.refresh_from_db()
    assert person.role == User.Role.MEMBER and not person.is_staff


def test_an_admin_cannot_demote_themself(admin_client: Client, admin: User) -> None:
    response = admin_client.post(
        reverse("staff:set_role", args=[admin.pk]), {"role": "member"}, follow=True
    )
    admin.refresh_from_db()
    assert admin.is_admin
    assert b"cannot change your own role" in response.content


def test_deactivation_asks_first(admin_client: Client) -> None:
    person = make_user("zed")
    page = admin_client.get(reverse("staff:deactivate", args=[person.pk]))
    assert b"Deactivate zed?" in page.content
    person.refresh_from_db()
    assert person.is_active
    admin_client.post(reverse("staff:deactivate", args=[person.pk]))
    person.refresh_from_db()
    assert not person.is_active
    admin_client.post(reverse("staff:reactivate", args=[person.pk]))
    person.refresh_from_db()
    assert person.is_active


def test_an_unknown_user_id_is_a_404(admin_client: Client) -> None:
    assert admin_client.post(reverse("staff:approve", args=[999999])).status_code == 404


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
