"""Sign-in through the team's OpenID Connect provider, on mozilla-django-oidc.

The library runs the authorization code flow: `state`, `nonce` and the PKCE verifier are kept
in the session per sign-in, the code is exchanged at the token endpoint, and the state is
dropped before that so a callback cannot be replayed. This module gives it its settings (the
endpoints from the provider's discovery, PKCE and nonce always on) and the backend that checks
the ID token (signature by the provider's published keys, issuer, audience, expiry, nonce)
before `accounts.oidc_accounts` picks the account.
"""

from __future__ import annotations

from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from accounts import oidc_accounts, oidc_discovery
from accounts.models import User

# Seconds of clock difference with the provider tolerated on `exp`, `iat` and `nbf`.
LEEWAY = 30
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat"]
# The library's settings that come from the provider's discovery document.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
# The library's settings that are not left to configuration.
FIXED = {
    "OIDC_USE_PKCE": True,
    "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
    "OIDC_USE_NONCE": True,
    "OIDC_VERIFY_SSL": True,
    "OIDC_ALLOW_UNSECURED_JWT": False,
    "OIDC_STORE_ID_TOKEN": True,  # the hint for the provider's end_session_endpoint
    "OIDC_STORE_ACCESS_TOKEN": False,
    "OIDC_AUTHENTICATION_CALLBACK_URL": "accounts:oidc_callback",
    "OIDC_OP_LOGOUT_URL_METHOD": "accounts.oidc_views.provider_logout_url",
}


class TokenRejected(Exception):
    """The provider's answer failed a check (signature, issuer, audience, expiry, nonce)."""


def setting(name: str, *default: Any) -> Any:
    """The value of one of mozilla-django-oidc's settings for this site."""
    if name in FIXED:
        return FIXED[name]
    if name in ENDPOINTS:
        return oidc_discovery.endpoint(ENDPOINTS[name])
    if name == "OIDC_RP_CLIENT_ID":
        return settings.OIDC_CLIENT_ID
    if name == "OIDC_RP_CLIENT_SECRET":
        return settings.OIDC_CLIENT_SECRET
    if name == "OIDC_RP_SCOPES":
        return scopes()
    if name == "OIDC_TOKEN_USE_BASIC_AUTH":
        return _basic_auth()
    return import_from_settings(name, *default)


def scopes() -> str:
    """OIDC_SCOPES, with `openid` first when it was left out."""
    names = settings.OIDC_SCOPES.split()
    return " ".join(names if "openid" in names else ["openid", *names])


def _basic_auth() -> bool:
    # HTTP Basic only for a provider that takes nothing else: client ids may hold a colon.
    methods = oidc_discovery.metadata().get("token_endpoint_auth_methods_supported") or []
    return "client_secret_post" not in methods and "client_secret_basic" in methods


class OIDCBackend(OIDCAuthenticationBackend):
    """Authenticates the callback of the identity provider; nothing else.

    It acts only when the callback view passes the sign-in's nonce, so the password form's
    `authenticate()` never reaches the provider; and it reads its settings when it acts (the
    library's reads them on creation, which Django does for every `authenticate()`).
    """

    get_settings = staticmethod(setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return setting("OIDC_OP_TOKEN_ENDPOINT")

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:
        return setting("OIDC_OP_USER_ENDPOINT")

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return settings.OIDC_CLIENT_ID

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:
        return settings.OIDC_CLIENT_SECRET

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> User | None:
        if request is None or "nonce" not in kwargs or not oidc_discovery.configured():
            return None
        return super().authenticate(request, **kwargs)

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Exchange the code; a public client (no secret) sends none."""
        if not payload.get("client_secret"):
            payload.pop("client_secret", None)
        answer = super().get_token(payload)
        if not isinstance(answer, dict):
            raise TokenRejected("the token endpoint did not answer a JSON object")
        return answer

    def verify_token(self, token: Any, **kwargs: Any) -> dict[str, Any]:
        """The ID token's claims, once its signature, issuer, audience, expiry and nonce hold."""
        if not isinstance(token, str) or not token:
            raise TokenRejected("the provider sent no ID token")
        try:
            claims = jwt.decode(
                token,
                oidc_discovery.signing_key(token),
                algorithms=oidc_discovery.algorithms(),
                audience=settings.OIDC_CLIENT_ID,
                issuer=oidc_discovery.metadata()["issuer"],
                leeway=LEEWAY,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the ID token is not valid: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != settings.OIDC_CLIENT_ID:
            raise TokenRejected("the ID token was issued to another party (azp)")
        if claims.get("nonce") != kwargs.get("nonce"):
            raise TokenRejected("the ID token's nonce is not this sign-in's")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise TokenRejected("the ID token names no subject")
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User:
        """The person's account, from the ID token's claims and the provider's userinfo."""
        claims = {**self._userinfo(access_token, id_token, payload), **payload}
        return oidc_accounts.sign_in(self.request, claims)

    def _userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict:
        """What the userinfo endpoint adds (email, groups), checked to be the same person."""
        if not access_token or not self.OIDC_OP_USER_ENDPOINT:
            return {}
        info = self.get_userinfo(access_token, id_token, payload)
        if not isinstance(info, dict) or info.get("sub") != payload["sub"]:
            raise TokenRejected("the provider's userinfo is about someone else")
        # The ID token's claims win where both have one (the merge above puts them last).
        return info

    def get_user(self, user_id: int) -> User | None:
        """As ModelBackend: a deactivated account's sessions end."""
        return ModelBackend.get_user(self, user_id)
