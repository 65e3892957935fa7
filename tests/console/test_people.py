"""The People page: admins approve, promote, demote, deactivate and reactivate accounts."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_members_cannot_open_the_people_page(member_client: Client) -> None:
    assert member_client.get(reverse("console:people")).status_code == 403


def test_the_people_page_lists_pending_accounts_first(admin_client: Client) -> None:
    make_user("zed", role=User.Role.MEMBER)
    make_user("yan", role=User.Role.PENDING)
    response = admin_client.get(reverse("console:people"))
    text = response.content.decode()
    assert response.status_code == 200
    assert "1 waiting for approval" in text
    assert text.index("yan") < text.index("zed")


def test_the_pages_of_a_search_keep_the_search(admin_client: Client) -> None:
    User.objects.bulk_create(User(username=f"zz{i:02}", role=User.Role.MEMBER) for i in range(60))
    first = admin_client.get(reverse("console:people"), {"q": "zz"}).content.decode()
    assert "Page 1 of 2" in first
    assert 'href="?q=zz&amp;page=2">Next</a>' in first
    second = admin_client.get(reverse("console:people"), {"q": "zz", "page": 2}).content.decode()
    assert "zz59" in second and 'href="?q=zz&amp;page=1">Previous</a>' in second


def test_approving_is_one_post(admin_client: Client) -> None:
    waiting = make_user("yan", role=User.Role.PENDING)
    response = admin_client.post(reverse("console:approve", args=[waiting.pk]))
    assert response.status_code == 302
    waiting.refresh_from_db()
    assert waiting.role == User.Role.MEMBER


def test_approving_needs_a_post(admin_client: Client) -> None:
    waiting = make_user("yan", role=User.Role.PENDING)
    assert admin_client.get(reverse("console:approve", args=[waiting.pk])).status_code == 405
    waiting.refresh_from_db()
    assert waiting.role == User.Role.PENDING


def test_an_admin_promotes_and_demotes(admin_client: Client) -> None:
    person = make_user("zed")
    admin_client.post(reverse("console:set_role", args=[person.pk]), {"role": "admin"})
    person.refresh_from_db()
    assert person.is_admin and person.is_staff
    admin_client.post(reverse("console:set_role", args=[person.pk]), {"role": "member"})
    person.refresh_from_db()
    assert person.role == User.Role.MEMBER and not person.is_staff


@pytest.mark.parametrize("role", ["pending", "root", ""])
def test_only_admin_or_member_can_be_given(admin_client: Client, role: str) -> None:
    person = make_user("zed")
    response = admin_client.post(
        reverse("console:set_role", args=[person.pk]), {"role": role}, follow=True
    )
    person.refresh_from_db()
    assert person.role == User.Role.MEMBER
    assert b"Choose admin or member." in response.content


def test_an_admin_cannot_demote_themself(admin_client: Client, admin: User) -> None:
    response = admin_client.post(
        reverse("console:set_role", args=[admin.pk]), {"role": "member"}, follow=True
    )
    admin.refresh_from_db()
    assert admin.is_admin
    assert b"cannot change your own role" in response.content


def test_deactivation_asks_first(admin_client: Client) -> None:
    person = make_user("zed")
    page = admin_client.get(reverse("console:deactivate", args=[person.pk]))
    assert b"Deactivate zed?" in page.content
    person.refresh_from_db()
    assert person.is_active
    admin_client.post(reverse("console:deactivate", args=[person.pk]))
    person.refresh_from_db()
    assert not person.is_active
    admin_client.post(reverse("console:reactivate", args=[person.pk]))
    person.refresh_from_db()
    assert person.is_active


def test_an_unknown_user_id_is_a_404(admin_client: Client) -> None:
    assert admin_client.post(reverse("console:approve", args=[999999])).status_code == 404
