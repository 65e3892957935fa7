"""Which account a sign-in through the provider gets: linking by verified email then by
subject, the sign-up modes, the admin role and groups from the provider's groups."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from accounts.models import Identity, User
from audit.models import Entry
from tests.accounts.sso_flow import sign_in
from tests.conftest import PASSWORD, make_user
from tests.oidc_provider import MockProvider, Person

pytestmark = pytest.mark.django_db


@pytest.fixture
def mia(db: None) -> User:
    """A password account with an email, and an admin so that nobody new is the first."""
    make_user("founder", role=User.Role.ADMIN)
    return make_user("mia", email="mia@example.com")


def session_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_a_verified_matching_email_links_the_password_account(
    client: Client, provider: MockProvider, mia: User
) -> None:
    provider.add(Person("sub-mia", "mia.w", email="MIA@example.com"))

    assert sign_in(client, provider, "mia.w")["Location"] == reverse("home")

    assert session_user(client) == mia
    assert mia.identities.get().subject == "sub-mia"
    assert User.objects.count() == 2
    link = Entry.objects.get(action="sso.link")
    assert (link.target_label, link.after["email"]) == ("mia", "MIA@example.com")
    mia.refresh_from_db()
    assert mia.check_password(PASSWORD)  # the password still works beside it


@pytest.mark.parametrize("verified", [False, "false", None])
def test_an_unverified_email_does_not_link(
    client: Client, provider: MockProvider, mia: User, settings: Settings, verified: object
) -> None:
    settings.SIGNUP_MODE = "open"
    provider.add(Person("sub-x", "mallory", email="mia@example.com", email_verified=verified))

    response = sign_in(client, provider, "mallory")

    assert response.status_code == 403
    assert b"has not verified that address" in response.content
    assert session_user(client) is None
    assert not Identity.objects.exists()
    assert User.objects.count() == 2  # no second account with mia's address either


def test_an_email_change_at_the_provider_neither_orphans_nor_hijacks(
    client: Client, provider: MockProvider, mia: User
) -> None:
    bob = make_user("bob", email="bob@example.com")
    person = provider.add(Person("sub-mia", "mia.w", email="mia@example.com"))
    sign_in(client, provider, "mia.w")
    client.post(reverse("accounts:logout"))

    person.email = "bob@example.com"  # verified at the provider, and bob's address here
    sign_in(client, provider, "mia.w")

    assert session_user(client) == mia  # found by subject, not email
    assert not bob.identities.exists()
    assert Identity.objects.count() == 1


def test_a_new_subject_with_a_linked_accounts_email_is_refused(
    client: Client, provider: MockProvider, mia: User
) -> None:
    provider.add(Person("sub-mia", "mia.w", email="mia@example.com"))
    provider.add(Person("sub-other", "other", email="mia@example.com"))
    sign_in(client, provider, "mia.w")
    client.post(reverse("accounts:logout"))

    response = sign_in(client, provider, "other")

    assert response.status_code == 403
    assert b"linked to someone else" in response.content
    assert session_user(client) is None
    assert list(mia.identities.values_list("subject", flat=True)) == ["sub-mia"]


def test_a_username_taken_here_gets_a_new_one_not_the_account(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "open"
    provider.add(Person("sub-2", "Mia", email="another@example.com"))
    sign_in(client, provider, "Mia")
    user = session_user(client)
    assert user is not None and user != mia
    assert user.username == "Mia-2"


def test_closed_sign_up_refuses_new_people_and_lets_existing_ones_in(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "closed"
    provider.add(Person("sub-new", "newcomer", email="new@example.com"))
    provider.add(Person("sub-mia", "mia.w", email="mia@example.com"))

    refused = sign_in(client, provider, "newcomer")
    assert refused.status_code == 403
    assert b"does not take new accounts" in refused.content
    assert not User.objects.filter(email="new@example.com").exists()

    assert sign_in(client, provider, "mia.w")["Location"] == reverse("home")
    assert session_user(client) == mia


def test_approval_mode_keeps_a_new_person_waiting(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "approval"
    provider.add(Person("sub-new", "newcomer", email="new@example.com"))
    response = sign_in(client, provider, "newcomer")
    assert response["Location"] == reverse("accounts:pending")
    assert client.get(reverse("home"))["Location"] == reverse("accounts:pending")
    assert User.objects.get(username="newcomer").role == User.Role.PENDING


def test_a_deactivated_account_may_not_sign_in(
    client: Client, provider: MockProvider, mia: User
) -> None:
    provider.add(Person("sub-mia", "mia.w", email="mia@example.com"))
    sign_in(client, provider, "mia.w")
    client.post(reverse("accounts:logout"))
    mia.deactivate()

    response = sign_in(client, provider, "mia.w")

    assert response.status_code == 403
    assert b"deactivated" in response.content
    assert session_user(client) is None


def test_admin_groups_give_and_take_back_the_admin_role(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.OIDC_ADMIN_GROUPS = ["Chat-Admins"]
    person = provider.add(
        Person("sub-mia", "mia.w", email="mia@example.com", groups=["/chat-admins", "staff"])
    )
    sign_in(client, provider, "mia.w")
    mia.refresh_from_db()
    assert mia.role == User.Role.ADMIN
    assert client.get(reverse("console:people")).status_code == 200

    client.post(reverse("accounts:logout"))
    person.groups = ["staff"]
    sign_in(client, provider, "mia.w")
    mia.refresh_from_db()
    assert mia.role == User.Role.MEMBER

    roles = Entry.objects.filter(action="account.role").order_by("id")
    assert [(e.before["role"], e.after["role"]) for e in roles] == [
        ("member", "admin"),
        ("admin", "member"),
    ]


def test_admin_groups_leave_an_admin_made_here_alone(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.OIDC_ADMIN_GROUPS = ["chat-admins"]
    mia.set_role(User.Role.ADMIN)
    provider.add(Person("sub-mia", "mia.w", email="mia@example.com", groups=[]))
    sign_in(client, provider, "mia.w")
    mia.refresh_from_db()
    assert mia.role == User.Role.ADMIN


def test_admin_groups_let_a_new_person_in_without_waiting(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "approval"
    settings.OIDC_ADMIN_GROUPS = ["chat-admins"]
    provider.add(Person("sub-boss", "boss", email="boss@example.com", groups=["chat-admins"]))
    assert sign_in(client, provider, "boss")["Location"] == reverse("home")
    assert User.objects.get(username="boss").role == User.Role.ADMIN


def test_group_sync_follows_the_provider_at_each_sign_in(
    client: Client, provider: MockProvider, mia: User, settings: Settings
) -> None:
    settings.OIDC_SYNC_GROUPS = True
    research, ops, kept_out = (Group.objects.create(name=n) for n in ("Research", "ops", "hr"))
    mia.groups.add(kept_out)
    person = provider.add(
        Person("sub-mia", "mia.w", email="mia@example.com", groups=["research", "/ops", "nope"])
    )

    sign_in(client, provider, "mia.w")
    assert set(mia.groups.all()) == {research, ops}
    assert not Group.objects.filter(name="nope").exists()

    client.post(reverse("accounts:logout"))
    person.groups = ["ops"]
    sign_in(client, provider, "mia.w")
    assert set(mia.groups.all()) == {ops}

    changes = Entry.objects.filter(action="group.members").order_by("id")
    assert [(e.before["groups"], e.after["groups"]) for e in changes] == [
        (["hr"], ["Research", "ops"]),
        (["Research", "ops"], ["ops"]),
    ]


def test_without_group_sync_groups_stay_as_admins_set_them(
    client: Client, provider: MockProvider, mia: User
) -> None:
    hr = Group.objects.create(name="hr")
    Group.objects.create(name="research")
    mia.groups.add(hr)
    provider.add(Person("sub-mia", "mia.w", email="mia@example.com", groups=["research"]))
    sign_in(client, provider, "mia.w")
    assert list(mia.groups.all()) == [hr]
