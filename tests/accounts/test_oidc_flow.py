"""Single sign-on against a real OpenID Connect provider on loopback: the flow (PKCE, state,
nonce), the ID token checks, the provider's keys and discovery cached, errors a person can
act on, and sign-out through the provider."""

from __future__ import annotations

import hashlib
from base64 import urlsafe_b64encode

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from accounts.models import Identity, User
from audit.models import Entry
from tests.accounts.sso_flow import authorize, query_of, sign_in, start
from tests.conftest import make_user
from tests.oidc_provider import MockProvider, Person

pytestmark = pytest.mark.django_db


@pytest.fixture
def grace(provider: MockProvider) -> Person:
    make_user("founder", role=User.Role.ADMIN)  # so that grace is not the install's first
    return provider.add(
        Person("sub-grace", "grace", email="grace@example.com", name="Grace Hopper")
    )


def signed_in_as(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_the_login_page_shows_the_button_only_when_configured(
    client: Client, settings: Settings
) -> None:
    make_user("mia")
    page = client.get(reverse("accounts:login"))
    assert b"oidc/login" not in page.content and b"Username" in page.content
    assert client.get(reverse("accounts:oidc_login")).status_code == 404
    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID = "https://id.example.com", "chatsite"
    settings.OIDC_BUTTON_LABEL = "Sign in with Example ID"
    page = client.get(reverse("accounts:login"), {"next": "/usage/"})
    assert b"Sign in with Example ID" in page.content
    assert b'href="/accounts/oidc/login/?next=/usage/"' in page.content
    assert b"Username" in page.content  # password sign-in stays beside it


@pytest.mark.parametrize("mode", ["open", "approval"])
def test_a_first_sign_in_creates_the_account_and_signs_in(
    client: Client, provider: MockProvider, grace: Person, settings: Settings, mode: str
) -> None:
    settings.SIGNUP_MODE = mode
    response = sign_in(client, provider, "grace")

    user = User.objects.get(username="grace")
    assert signed_in_as(client) == user
    assert (user.email, user.first_name, user.last_name) == ("grace@example.com", "Grace", "Hopper")
    assert not user.has_usable_password()
    identity = user.identities.get()
    assert (identity.issuer, identity.subject) == (provider.url, "sub-grace")
    if mode == "open":
        assert user.role == User.Role.MEMBER
        assert response["Location"] == reverse("home")
    else:
        assert user.role == User.Role.PENDING  # waits for an admin like any other sign-up
        assert response["Location"] == reverse("accounts:pending")
    actions = list(Entry.objects.order_by("id").values_list("action", "actor_name"))
    assert actions == [("sso.signup", "grace"), ("sso.login", "grace")]
    assert Entry.objects.get(action="sso.signup").after["role"] == user.role


def test_the_very_first_account_of_an_install_is_an_admin(
    client: Client, provider: MockProvider
) -> None:
    provider.add(Person("sub-1", "ada", email="ada@example.com"))
    sign_in(client, provider, "ada")
    assert User.objects.get().role == User.Role.ADMIN


def test_the_flow_uses_pkce_state_and_nonce(
    client: Client, provider: MockProvider, grace: Person, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "open"
    provider.signed_in = "grace"
    url = start(client, next_url="/usage/")
    params = query_of(url)
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    assert params["scope"].split() == ["openid", "email", "profile"]
    assert params["redirect_uri"] == "http://testserver/accounts/oidc/callback/"

    response = client.get(authorize(url))

    assert response["Location"] == "/usage/"
    verifier = provider.token_requests[-1]["code_verifier"]
    digest = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == params["code_challenge"]
    assert provider.token_requests[-1]["client_secret"] == provider.client_secret


def test_a_state_that_was_used_or_never_given_is_refused(
    client: Client, provider: MockProvider, grace: Person, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "open"
    provider.signed_in = "grace"
    callback = authorize(start(client))
    assert client.get(callback).status_code == 302
    client.post(reverse("accounts:logout"))

    replayed = client.get(callback)  # the same callback again, in a session that did start one
    start(client)
    replayed_again = client.get(callback)

    for response in (replayed, replayed_again):
        assert response.status_code == 400
        assert b"expired or was already used" in response.content
    assert signed_in_as(client) is None
    strange = client.get(reverse("accounts:oidc_callback"), {"code": "x", "state": "y"})
    assert strange.status_code == 400


@pytest.mark.parametrize(
    ("tweak", "value", "reason"),
    [
        ("signature", "payload", b"Signature verification failed"),
        ("signature", "other_key", b"Signature verification failed"),
        ("signature", "hs256", b"alg value is not allowed"),
        ("signature", "none", b"alg value is not allowed"),
        ("audience", "someone-else", b"Audience doesn"),
        ("audience", ["chatsite", "someone-else"], b"another party"),
        ("issuer", "https://evil.example", b"Invalid issuer"),
        ("expires_in", -120, b"Signature has expired"),
        ("nonce", "not-this-sign-in", b"nonce is not this sign-in"),
        ("omit_id_token", True, b"no ID token"),
        ("userinfo_sub", "sub-someone-else", b"userinfo is about someone else"),
    ],
)
def test_an_id_token_that_fails_a_check_is_refused(
    client: Client,
    provider: MockProvider,
    grace: Person,
    settings: Settings,
    tweak: str,
    value: object,
    reason: bytes,
) -> None:
    settings.SIGNUP_MODE = "open"
    setattr(provider.tweaks, tweak, value)

    response = sign_in(client, provider, "grace")

    assert response.status_code == 403
    assert b"did not pass this site" in response.content
    assert reason in response.content
    assert signed_in_as(client) is None
    assert not User.objects.filter(username="grace").exists()
    assert not Identity.objects.exists()


def test_the_provider_keys_and_discovery_are_fetched_once(
    client: Client, provider: MockProvider, grace: Person, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "open"
    for _ in range(3):
        assert sign_in(client, provider, "grace")["Location"] == reverse("home")
        client.post(reverse("accounts:logout"))
    assert provider.hits["/jwks"] == 1
    assert provider.hits["/.well-known/openid-configuration"] == 1
    assert provider.hits["/token"] == 3


def test_a_refusal_at_the_provider_is_explained(
    client: Client, provider: MockProvider, grace: Person
) -> None:
    provider.deny = "access_denied"
    response = sign_in(client, provider, "grace")
    assert response.status_code == 403
    assert b"did not sign you in (The user said no)" in response.content
    assert signed_in_as(client) is None


def test_an_unreachable_provider_is_explained(client: Client, settings: Settings) -> None:
    with MockProvider() as gone:
        url = gone.url
    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID = url, "chatsite"
    response = client.get(reverse("accounts:oidc_login"))
    assert response.status_code == 502
    assert b"could not be reached" in response.content


def test_a_provider_gone_before_the_code_is_exchanged_is_explained(
    client: Client, provider: MockProvider, grace: Person
) -> None:
    provider.signed_in = "grace"
    callback = authorize(start(client))
    provider.stop()
    response = client.get(callback)
    assert response.status_code == 502
    assert b"could not be reached" in response.content
    assert signed_in_as(client) is None


def test_a_code_the_provider_does_not_know_is_refused(
    client: Client, provider: MockProvider, grace: Person
) -> None:
    provider.signed_in = "grace"
    callback = authorize(start(client))
    provider.codes.clear()
    response = client.get(callback)
    assert response.status_code == 403
    assert b"did not accept this sign-in" in response.content


def test_sign_out_ends_the_session_and_the_provider_session(
    client: Client, provider: MockProvider, grace: Person, settings: Settings
) -> None:
    settings.SIGNUP_MODE = "open"
    sign_in(client, provider, "grace")

    response = client.post(reverse("accounts:logout"))

    assert signed_in_as(client) is None
    assert response["Location"].startswith(f"{provider.url}/logout?")
    params = query_of(response["Location"])
    assert params["post_logout_redirect_uri"] == "http://testserver/accounts/login/"
    assert params["client_id"] == provider.client_id
    assert params["id_token_hint"].count(".") == 2


def test_a_password_session_signs_out_here_only(
    member_client: Client, provider: MockProvider
) -> None:
    response = member_client.post(reverse("accounts:logout"))
    assert response["Location"] == reverse("accounts:login")
    assert member_client.get(reverse("accounts:logout")).status_code == 405
