"""Which account a person signing in through the identity provider gets.

The provider names a person by issuer and subject (`iss`, `sub`). An account linked to that
pair is theirs, whatever their email has become. Otherwise an existing account is linked only
when the provider says the person's email is verified, it is that account's email, and the
account is not linked to another subject of the same provider already; else a new account is
made if `SIGNUP_MODE` allows (the first account of an install is an admin, as ever). Then the
provider's groups decide the admin role (`OIDC_ADMIN_GROUPS`) and, with `OIDC_SYNC_GROUPS`, the
person's groups here. Every sign-in, new account, link and change goes to the audit log.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts import groups as teams
from accounts import services
from accounts.models import Identity, User
from audit import services as audit

USERNAME_MAX = 150
_NOT_IN_USERNAME = re.compile(r"[^\w.@+-]+")


class SignInRefused(Exception):
    """The provider vouched for the person, but they may not sign in here: what to tell them,
    and the HTTP status to say it with."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def sign_in(request: HttpRequest, claims: dict[str, Any]) -> User:
    """The account for the person the verified `claims` describe, with their role and groups
    brought up to date (SignInRefused if they may not sign in)."""
    try:
        with transaction.atomic():
            identity = _identity_for(request, claims)
    except IntegrityError:
        # The same person signing in twice at once: the other request linked them first.
        identity = _linked(claims)
        if identity is None:
            raise SignInRefused("Signing in did not finish. Try again.", 409) from None
    with transaction.atomic():
        user = identity.user
        groups = provider_groups(claims)
        _apply_admin_groups(request, identity, groups)
        _sync_groups(request, user, groups)
        identity.last_login_at = timezone.now()
        identity.save(update_fields=["admin_from_provider", "last_login_at"])
        after = {"issuer": identity.issuer, "subject": identity.subject}
        audit.record(request, "sso.login", user, actor=user, after=after)
    return user


def _linked(claims: dict[str, Any]) -> Identity | None:
    found = Identity.objects.select_related("user")
    return found.filter(issuer=claims["iss"], subject=claims["sub"]).first()


def _identity_for(request: HttpRequest, claims: dict[str, Any]) -> Identity:
    identity = _linked(claims)
    if identity is None:
        identity = _link_existing(request, claims) or _create(request, claims)
    if not identity.user.is_active:
        raise SignInRefused("This account has been deactivated. Ask an admin to reactivate it.")
    return identity


def _link_existing(request: HttpRequest, claims: dict[str, Any]) -> Identity | None:
    """Link the account with the person's email, when the provider has verified it."""
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        return None
    matches = list(User.objects.filter(email__iexact=email)[:2])
    if not matches:
        return None
    if len(matches) > 1:
        raise SignInRefused(
            f"Several accounts here use {email}, so none was linked. Ask an admin to sort it out."
        )
    user = matches[0]
    if not email_verified(claims):
        raise SignInRefused(
            f"An account here uses {email}, but your identity provider has not verified that "
            "address, so it was not linked. Verify it at the provider, then sign in again."
        )
    if user.identities.filter(issuer=claims["iss"]).exists():
        raise SignInRefused(
            f"The account that uses {email} is linked to someone else at the identity "
            "provider. Ask an admin."
        )
    if not user.is_active:
        raise SignInRefused("This account has been deactivated. Ask an admin to reactivate it.")
    identity = Identity.objects.create(user=user, issuer=claims["iss"], subject=claims["sub"])
    after = {"issuer": identity.issuer, "subject": identity.subject, "email": email}
    audit.record(request, "sso.link", user, actor=user, after=after)
    return identity


def _create(request: HttpRequest, claims: dict[str, Any]) -> Identity:
    """A new account for the person, as the sign-up mode allows."""
    if settings.SIGNUP_MODE == "closed" and User.objects.exists():
        raise SignInRefused(
            "This workspace does not take new accounts, and none here is linked to you. Ask an "
            "admin to create one with your email address, then sign in again."
        )
    email = claims.get("email") if email_verified(claims) else ""
    # No password: the account signs in through the provider (set_password(None)).
    user = services.create_account(unique_username(claims), None, email or "")  # type: ignore[arg-type]
    user.first_name = _text(claims.get("given_name"), 150)
    user.last_name = _text(claims.get("family_name"), 150)
    user.save(update_fields=["first_name", "last_name"])
    identity = Identity.objects.create(user=user, issuer=claims["iss"], subject=claims["sub"])
    after = {"issuer": identity.issuer, "subject": identity.subject, "role": user.role}
    audit.record(request, "sso.signup", user, actor=user, after=after)
    return identity


def email_verified(claims: dict[str, Any]) -> bool:
    """Whether the provider says the email is verified (some send the string "true")."""
    return claims.get("email_verified") in (True, "true")


def unique_username(claims: dict[str, Any]) -> str:
    """A free username from the person's preferred username, email or subject."""
    email = claims.get("email") if isinstance(claims.get("email"), str) else ""
    candidates = (claims.get("preferred_username"), email.split("@")[0], claims.get("nickname"))
    base = next((name for name in map(_clean_username, candidates) if name), "user")
    name, number = base, 1
    while User.objects.filter(username__iexact=name).exists():
        number += 1
        suffix = f"-{number}"
        name = base[: USERNAME_MAX - len(suffix)] + suffix
    return name


def _clean_username(value: object) -> str:
    if not isinstance(value, str):
        return ""
    return _NOT_IN_USERNAME.sub("_", value.strip()).strip("_")[:USERNAME_MAX]


def _text(value: object, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def provider_groups(claims: dict[str, Any]) -> set[str]:
    """The person's groups at the provider, lower-cased, without Keycloak's leading "/"."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return set()
    return {item.strip().lstrip("/").lower() for item in value if isinstance(item, str)} - {""}


def _apply_admin_groups(request: HttpRequest, identity: Identity, groups: set[str]) -> None:
    """Members of OIDC_ADMIN_GROUPS are admins; one who leaves them loses the role the
    provider gave (never a role given here)."""
    admin_groups = {name.strip().lstrip("/").lower() for name in settings.OIDC_ADMIN_GROUPS}
    if not admin_groups:
        return
    user = identity.user
    if groups & admin_groups:
        if user.role != User.Role.ADMIN:
            _set_role(request, user, User.Role.ADMIN)
            identity.admin_from_provider = True
    elif identity.admin_from_provider:
        if user.role == User.Role.ADMIN:
            _set_role(request, user, User.Role.MEMBER)
        identity.admin_from_provider = False


def _set_role(request: HttpRequest, user: User, role: str) -> None:
    before = {"role": user.role}
    user.set_role(role)
    after = {"role": user.role, "by": "identity provider groups"}
    audit.record(request, "account.role", user, actor=user, before=before, after=after)


def _sync_groups(request: HttpRequest, user: User, groups: set[str]) -> None:
    """With OIDC_SYNC_GROUPS, the person is in exactly the groups here that are named like
    their groups at the provider (groups are not created)."""
    if not settings.OIDC_SYNC_GROUPS:
        return
    wanted = [group for group in Group.objects.all() if group.name.lower() in groups]
    before, after = teams.set_groups(user, wanted)
    if before != after:
        audit.record(
            request,
            "group.members",
            user,
            actor=user,
            before={"groups": before},
            after={"groups": after, "by": "identity provider groups"},
        )
